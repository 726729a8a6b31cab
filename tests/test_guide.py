"""docs/design.md's "Adding an op" held true: it names at most nine files, each exists, and every other
place that must know an op follows from the registry or fails here when it does not know it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shufflekernels import reference, registry

from op_cases import CASES, INTERPRETER_CASES

ROOT = Path(__file__).resolve().parent.parent
DESIGN = (ROOT / "docs" / "design.md").read_text()


def _section(text: str, heading: str) -> str:
    """A '## heading' section of a markdown text, up to the next '## ' heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _guide_files() -> list[str]:
    """The files the guide's numbered list names: the first `path` of each item."""
    items = re.findall(r"^\d+\. `([^`]+)`", _section(DESIGN, "Adding an op"), re.M)
    return items


def test_guide_names_at_most_nine_files_that_exist():
    files = _guide_files()
    assert 0 < len(files) <= 9, files
    for path in files:
        pattern = path.replace("<family>", "*")
        assert list(ROOT.glob(pattern)), f"the guide names {path}, which matches no file"


@pytest.mark.parametrize("op", list(registry.OPS))
def test_every_op_documents_its_semantics(op):
    # The registry docstring is where an op's semantics live (the guide's item 6): what it returns and
    # in which shapes.
    doc = registry.OPS[op].doc
    assert "Returns" in doc and "``[" in doc, f"{op}: the registry docstring states no result shape"


@pytest.mark.parametrize("op", list(registry.OPS))
def test_every_op_is_exported_by_the_reference(op):
    assert op in reference.__all__ and callable(getattr(reference, op))


@pytest.mark.parametrize("op", list(registry.OPS))
def test_every_op_has_shapes(op):
    # An op missing from a shape table would get no parity test at all, silently.
    assert CASES.get(op), f"tests/op_cases.py: CASES has no shapes for {op}"
    if "triton" in registry.OPS[op].backends:
        assert INTERPRETER_CASES.get(op), f"tests/op_cases.py: INTERPRETER_CASES has no shapes for {op}"


def test_readme_names_only_ops_that_exist():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`(?:sk\.ops\.)?([a-z_0-9]+)\(", readme))
    ops_like = {name for name in named if name.endswith(("_unit", "shuffle", "_cat", "conv3x3"))}
    assert ops_like <= set(registry.OPS), ops_like - set(registry.OPS)
