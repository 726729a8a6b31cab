# Builds shufflekernels._C: the op library (TORCH_LIBRARY schemas, CPU kernels, CUDA kernels when a
# toolkit is found) inside a pybind11-style module that loads it and reports how it was built.
#
# Build against the installed torch:  pip install --no-build-isolation .
#
# Switches (environment variables, read below):
#   SK_CUDA=auto|1|0          auto (default): compile the CUDA kernels when torch is a CUDA build and a
#                             CUDA toolkit is found, with or without a GPU; 1: fail if that is not so;
#                             0: CPU only.
#   CUDA_HOME                 the toolkit folder (holding bin/nvcc and include/cuda_runtime.h). Unset:
#                             found from the nvcc on PATH, following wrapper scripts that exec the real one.
#   TORCH_CUDA_ARCH_LIST      CUDA architectures, e.g. "9.0" (CI). Default: "8.0;8.6;8.9;9.0+PTX".
#   SK_DEBUG=1                -O0 -g, host and device (-G is not used: it changes kernel behaviour).
#   SK_SANITIZE=1             AddressSanitizer + UndefinedBehaviorSanitizer on the C++ (CPU) code;
#                             run with LD_PRELOAD of libasan (see .ci/run).
#   SK_NATIVE_ARCH=1          -march=native for the CPU kernels (never the default: the package must
#                             run on any x86-64 machine).
#   SK_HOST_EMULATION=1|0     1 (default): also build the CUDA kernels' bodies for host threads, the
#                             shufflekernels_cuda_emulated library the tests run them through on machines
#                             without a GPU; 0 leaves it out (a GPU machine's build: it is the longest
#                             translation unit, and the GPU runs the real kernels).
#   MAX_JOBS                  parallel compile jobs for ninja (default: torch's choice).
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _real_nvcc(nvcc: str) -> Path:
    """Follows symlinks and small wrapper scripts (`exec /path/to/nvcc "$@"`) to the real nvcc."""
    path = Path(nvcc).resolve()
    for _ in range(4):
        try:
            head = path.read_bytes()[:4096]
        except OSError:
            break
        if not head.startswith(b"#!"):
            break
        match = re.search(rb"exec\s+(\S+/nvcc)\b", head)
        if not match:
            break
        path = Path(match.group(1).decode()).resolve()
    return path


def find_cuda_home():
    """The CUDA toolkit folder, or None. Honours CUDA_HOME/CUDA_PATH, then the nvcc on PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            home = Path(os.environ[var])
            return home if (home / "bin" / "nvcc").exists() else None
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        candidates.append(_real_nvcc(nvcc).parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    for home in candidates:
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


SK_CUDA = os.environ.get("SK_CUDA", "auto").lower()
if SK_CUDA not in ("auto", "0", "1"):
    sys.exit(f"setup.py: SK_CUDA expected auto, 0 or 1, got {SK_CUDA!r}")
CUDA_HOME = find_cuda_home() if SK_CUDA != "0" else None
if CUDA_HOME is not None:
    # torch.utils.cpp_extension reads CUDA_HOME once, at import: set it before the import.
    os.environ["CUDA_HOME"] = str(CUDA_HOME)
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;8.6;8.9;9.0+PTX")


def supported_torch() -> tuple[str, str]:
    """The oldest and newest torch CI proves, from pyproject.toml's [tool.shufflekernels] (read with a
    pattern: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    return tuple(re.search(rf'^torch-{end} = "([\d.]+)"', text, re.M).group(1) for end in ("oldest", "newest"))


def release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as 2.11.0+cu130."""
    return tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", version).groups())


def toolkit_version(cuda_home: Path) -> str:
    """The CUDA toolkit's version (e.g. 13.0), from its cuda.h: the toolkit that compiles the kernels,
    which may differ from the one torch was built with (torch.version.cuda)."""
    match = re.search(r"#define CUDA_VERSION (\d+)", (cuda_home / "include" / "cuda.h").read_text())
    return f"{int(match.group(1)) // 1000}.{int(match.group(1)) % 1000 // 10}" if match else "unknown"


import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

TORCH_OLDEST, TORCH_NEWEST = supported_torch()
if release(torch.__version__) < release(TORCH_OLDEST):
    sys.exit(
        f"setup.py: shufflekernels supports torch {TORCH_OLDEST} to {TORCH_NEWEST} (the releases CI builds and "
        f'tests), got torch {torch.__version__}: pip install "torch>={TORCH_OLDEST}"'
    )
if release(torch.__version__) > release(TORCH_NEWEST):
    print(
        f"shufflekernels: torch {torch.__version__} is newer than the newest release CI tests ({TORCH_NEWEST})",
        file=sys.stderr,
    )

with_cuda = SK_CUDA != "0" and torch.version.cuda is not None and CUDA_HOME is not None
if SK_CUDA == "1" and not with_cuda:
    sys.exit(
        "setup.py: SK_CUDA=1 but the CUDA kernels cannot be built: "
        f"torch.version.cuda={torch.version.cuda!r}, CUDA toolkit={CUDA_HOME!r} "
        "(set CUDA_HOME to the folder holding bin/nvcc)"
    )

debug = os.environ.get("SK_DEBUG") == "1"
sanitize = os.environ.get("SK_SANITIZE") == "1"
native_arch = os.environ.get("SK_NATIVE_ARCH") == "1"


cuda_archs = os.environ["TORCH_CUDA_ARCH_LIST"] if with_cuda else ""
build_type = "debug" if debug else "release"
if sanitize:
    build_type += "+asan+ubsan"

# Build facts reach the C++ code through a generated header: string values with ';' and '+' do not
# survive the shell quoting of -D flags in the ninja file.
generated = ROOT / "build" / "sk_generated"
generated.mkdir(parents=True, exist_ok=True)
config = (
    "// Generated by setup.py; read by csrc/build_info.h.\n#pragma once\n"
    f"#define SK_WITH_CUDA {int(with_cuda)}\n"
    f'#define SK_CUDA_ARCHS "{cuda_archs}"\n'
    f'#define SK_CUDA_VERSION "{torch.version.cuda if with_cuda else ""}"\n'
    f'#define SK_CUDA_TOOLKIT_VERSION "{toolkit_version(CUDA_HOME) if with_cuda else ""}"\n'
    f'#define SK_TORCH_VERSION "{torch.__version__}"\n'
    f'#define SK_BUILD_TYPE "{build_type}"\n'
)
config_path = generated / "sk_build_config.h"
if not config_path.exists() or config_path.read_text() != config:
    config_path.write_text(config)  # rewritten only on change, so ninja does not rebuild for nothing

opt = ["-O0", "-g"] if debug else ["-O3"]
cxx_flags = ["-std=c++20", "-fopenmp", "-fvisibility=hidden", *opt]
link_flags = ["-fopenmp"]
if native_arch:
    cxx_flags.append("-march=native")
if sanitize:
    cxx_flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    link_flags += ["-fsanitize=address,undefined"]

# Every C++ file under csrc/ (each op family's file registers its own kernels), so a new one needs no
# entry here; CMakeLists.txt globs the same, less the Python module.
sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.cpp"))
if os.environ.get("SK_HOST_EMULATION", "1") == "0":
    # The emulated library: its registration and the op families it compiles for host threads.
    sources = [s for s in sources if s != "csrc/cuda/host_emulation.cpp" and not s.startswith("csrc/cuda/emulated/")]
extra_compile_args = {"cxx": cxx_flags}
extension_cls = CppExtension
if with_cuda:
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.cu"))
    extra_compile_args["nvcc"] = ["-std=c++20", "--expt-relaxed-constexpr", *opt]
    extension_cls = CUDAExtension

print(
    f"shufflekernels: building CPU{' + CUDA (' + cuda_archs + ', toolkit ' + str(CUDA_HOME) + ')' if with_cuda else ' only'}"
    f", {build_type}",
    file=sys.stderr,
)

setup(
    ext_modules=[
        extension_cls(
            name="shufflekernels._C",
            sources=sources,
            include_dirs=[str(ROOT / "csrc"), str(generated)],
            extra_compile_args=extra_compile_args,
            extra_link_args=link_flags,
            py_limited_api=False,
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
