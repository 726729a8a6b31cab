"""The whole-network op's flat parameter list, described once for Python (csrc/network_params.h is the
C++ twin; the bad-input table of tests/test_contract.py holds the two equal: both checks name the same
``params[i]``).

``shufflenet(x, params, stage_repeats)`` takes every folded parameter in one list, in this order:

- the stem: conv1's weight ``[C0, 3, 3, 3]`` and bias;
- per stage, a down unit (10 tensors, in ``down_unit``'s argument order), then ``repeats - 1`` split
  units (6 tensors, in ``split_unit``'s order);
- conv5's weight ``[C5, C, 1, 1]`` and bias;
- the classifier's weight as a 1x1 conv ``[classes, C5, 1, 1]`` and bias.

``layout(stage_repeats)`` cuts that list into named sections; the reference, the registry's check and
example builder and FusedShuffleNetV2 read the list through it, never through offsets of their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Kind = Literal["stem", "down_unit", "split_unit", "conv5", "classifier"]

# Each section's tensors, by name, in list order (the units' in their ops' argument order).
NAMES: dict[Kind, tuple[str, ...]] = {
    "stem": ("weight", "bias"),
    "down_unit": (
        "dw1_weight",
        "dw1_bias",
        "pw3_weight",
        "pw3_bias",
        "pw1_weight",
        "pw1_bias",
        "dw2_weight",
        "dw2_bias",
        "pw2_weight",
        "pw2_bias",
    ),  # fmt: skip
    "split_unit": ("pw1_weight", "pw1_bias", "dw_weight", "dw_bias", "pw2_weight", "pw2_bias"),
    "conv5": ("weight", "bias"),
    "classifier": ("weight", "bias"),
}

# Which tensor's output channels set a section's width (the down unit's pw3: its branch width). A split
# unit has none of its own: its branches are half its input.
WIDTH_FROM: dict[Kind, int | None] = {"stem": 0, "down_unit": 2, "split_unit": None, "conv5": 0, "classifier": 0}


@dataclass(frozen=True)
class Section:
    """One layer's run of tensors in the flat list: ``params[start : start + len(names)]``."""

    kind: Kind
    start: int
    stage: int | None = None  # 0 for stage2's units, 1 for stage3's, ...; None outside the stages

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES[self.kind]

    @property
    def stop(self) -> int:
        return self.start + len(self.names)

    def of(self, params: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(params[self.start : self.stop])


def layout(stage_repeats: Sequence[int]) -> list[Section]:
    """The sections of the list for these stages, in order."""
    sections, start = [Section("stem", 0)], len(NAMES["stem"])
    for stage, repeats in enumerate(stage_repeats):
        for unit in range(repeats):
            section = Section("down_unit" if unit == 0 else "split_unit", start, stage)
            sections.append(section)
            start = section.stop
    sections.append(Section("conv5", start))
    sections.append(Section("classifier", start + len(NAMES["conv5"])))
    return sections


def count(stage_repeats: Sequence[int]) -> int:
    """How many tensors the list holds for these stages."""
    return layout(stage_repeats)[-1].stop


def sections(params: Sequence[Tensor], stage_repeats: Sequence[int]) -> Iterator[tuple[Section, tuple[Tensor, ...]]]:
    """Each section of ``params`` with its tensors."""
    for section in layout(stage_repeats):
        yield section, section.of(params)


def shapes(kind: Kind, c_in: int, width: int | None) -> list[tuple[int, ...]]:
    """The shapes of a section's tensors, given its input channels and its width (``WIDTH_FROM``)."""
    if kind == "stem":
        return [(width, c_in, 3, 3), (width,)]
    if kind == "down_unit":
        b = width
        return [(c_in, 1, 3, 3), (c_in,), (b, c_in, 1, 1), (b,), (b, c_in, 1, 1), (b,), (b, 1, 3, 3), (b,),
                (b, b, 1, 1), (b,)]  # fmt: skip
    if kind == "split_unit":
        b = c_in // 2
        return [(b, b, 1, 1), (b,), (b, 1, 3, 3), (b,), (b, b, 1, 1), (b,)]
    return [(width, c_in, 1, 1), (width,)]  # conv5 and the classifier: 1x1 convs


def out_channels(kind: Kind, c_in: int, width: int | None) -> int:
    """A section's output channels: a unit's two branches are concatenated."""
    if kind == "down_unit":
        return 2 * width
    return c_in if kind == "split_unit" else width


def flatten(stem: Sequence[Tensor], units: Sequence[Sequence[Tensor]], head: Sequence[Tensor]) -> list[Tensor]:
    """The list from its parts: the stem's 2 tensors, each unit's (10 or 6, in order), and the head's 4
    (conv5's weight and bias, the classifier's)."""
    return [*stem, *(t for unit in units for t in unit), *head]
