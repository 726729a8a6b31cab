// The op library: every schema is declared once (csrc/schema.h) and defined here. Each backend
// registers its implementation against these schemas (csrc/cpu/ for the CPU key, csrc/cuda/ for the
// CUDA key); the fake (meta) implementations live beside the Python wrappers in shufflekernels/ops.py.
//
// The Python module shufflekernels._C (csrc/python_module.cpp) exists only to load this library and
// report how it was built; no op reaches Python any other way.
#include "schema.h"

TORCH_LIBRARY(shufflekernels, m) {
  shufflekernels::define_op_schemas(m);
  shufflekernels::define_hint_schemas(m);
}
