"""Checks the machine code of the installed CUDA kernels (no GPU needed): every kernel instantiated with
a vector width must move its data with vector instructions of that width, so that the vector paths the
host emulation tests (tests/test_cuda_emulation.py) are the ones the GPU will run.

For each run_body<Body<T, index_t, V, ...>> in the sm_90 SASS: a V * sizeof(T) of 16, 8 or 4 bytes must
give STG.E.128 / STG.E.64 / STG.E stores, and loads of that width too, except the bodies whose loads are
gathers by design (GATHERED_LOADS). And no kernel may touch local memory (a body's arrays indexed at
run time spill the kernel's parameters there and turn its global loads into generic ones).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import triton

import shufflekernels

ELEMENT_BYTES = {"float": 4, "unsigned int": 4, "c10::Half": 2, "c10::BFloat16": 2, "unsigned short": 2}
# Bodies that store V-wide but gather what they load, and why.
GATHERED_LOADS = {
    ("InterleaveBody", "true"): "each output vector takes its channels from several sources",
    ("StemBody", "true"): "V output channels read their input taps once each and their weights Cin*9 apart",
}
# Body<T, index_t, V[, channels_last, ...]>: a body that reads one layout only has no layout argument.
BODY = re.compile(r"run_body<shufflekernels::gpu::(\w+)<([\w: ]+?), (int|long), (\d+)(?:, (true|false))?")


def main() -> int:
    so = shufflekernels._C.__file__
    # This toolkit has no cuobjdump; the one Triton ships reads the embedded cubins just as well.
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    sass = subprocess.run([cuobjdump, "-sass", so], capture_output=True, text=True, check=True).stdout
    functions = re.split(r"\n\s*Function : ", sass)[1:]
    names = subprocess.run(
        ["c++filt"],
        input="\n".join(f.split("\n", 1)[0].strip() for f in functions),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    kernels, checked, failures = 0, 0, []
    for name, code in zip(names, functions):
        match = BODY.search(name)
        if not match:
            continue
        body, element, _, width, channels_last = match.groups()
        kernels += 1
        if re.search(r"\b(LDL|STL)\b", code):
            failures.append(f"{body}<{element}, V={width}, nhwc={channels_last}>: uses local memory")
        nbytes = int(width) * ELEMENT_BYTES[element]
        if nbytes not in (4, 8, 16) or int(width) == 1:
            continue
        suffix = {16: ".128", 8: ".64", 4: ""}[nbytes]  # a 32-bit access has no suffix (LDG.E.U16 is 16-bit)
        wanted = [f"STG.E{suffix}"]
        if (body, channels_last) not in GATHERED_LOADS:
            wanted.append(f"LDG.E{suffix}")
        missing = [op for op in wanted if not re.search(re.escape(op) + r"\s", code)]
        checked += 1
        if missing:
            failures.append(f"{body}<{element}, V={width}, nhwc={channels_last}>: no {', '.join(missing)}")
    print(f"check_sass: {kernels} kernels, {checked} of them vectorised; {len(failures)} problems")
    for failure in failures:
        print("  " + failure)
    return 1 if failures or checked == 0 else 0  # none found means the pattern no longer matches


if __name__ == "__main__":
    sys.exit(main())
