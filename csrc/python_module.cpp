// shufflekernels._C: the Python extension module. Importing it loads the shared library that also
// holds the op schemas (csrc/schema.cpp) and kernels, whose static initialisers register them with the
// dispatcher. Its one function reports how the library was built. It includes no torch header, so it
// compiles in a second.
#include <Python.h>

#include <string>

#include "build_info.h"
#include "cpu/engine.h"

namespace {

PyObject* build_info(PyObject*, PyObject*) {
  PyObject* info = PyDict_New();
  auto set_str = [&](const char* key, const std::string& value) {
    PyObject* v = PyUnicode_FromString(value.c_str());
    PyDict_SetItemString(info, key, v);
    Py_DECREF(v);
  };
  auto set_bool = [&](const char* key, bool value) { PyDict_SetItemString(info, key, value ? Py_True : Py_False); };
  set_bool("cpu", true);
  set_bool("cuda", SK_WITH_CUDA != 0);
  set_str("cuda_archs", SK_CUDA_ARCHS);
  // The CUDA torch was built with, and the toolkit that compiled these kernels: they may differ.
  set_str("cuda_version", SK_CUDA_VERSION);
  set_str("cuda_toolkit", SK_CUDA_TOOLKIT_VERSION);
  set_str("simd", shufflekernels::compiled_simd_level());
  // The CPU engine variant chosen for this machine at run time (AVX-512, AVX2 or baseline).
  set_str("cpu_engine_isa", shufflekernels::cpu::kernels().isa);
  set_str("torch_version", SK_TORCH_VERSION);
  set_str("build_type", SK_BUILD_TYPE);
  return info;
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS,
     "How this library was built (backends, CUDA archs, SIMD level, torch version) and the CPU engine variant in use."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "shufflekernels op library loader", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
