// The float32 channels_last engine behind the CPU units: a register-blocked GEMM for the 1x1 convs
// (bias and ReLU applied as the accumulators are stored), a depthwise 3x3 over one output row, and
// the two-branch interleave that writes a unit's concat+shuffle in place.
//
// These are plain loops on pointers, with no torch header, so they compile quickly and once per
// instruction set: engine_impl.inc is built as AVX-512, AVX2+FMA and baseline variants, and
// kernels() picks one at run time from what the CPU reports. Each call is single-threaded; the unit
// kernels (units.cpp, dwconv.cpp, conv.cpp; schedule.h) parallelise over pixels and rows.
#pragma once

#include <cstdint>

namespace shufflekernels::cpu {

// C[m*ldc + n] = act(bias[n] + sum_k A[m*lda + k] * B[k*ldb + n]) for m < M, n < N.
// B is "K-major" (row k holds every output channel's weight for input channel k): a 1x1 conv weight
// [N, K] stored transposed. act is ReLU when relu, else identity; bias may be null.
struct GemmArgs {
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  int64_t M, N, K;
  const float* bias;
  bool relu;
  // C rows have room up to N rounded up to kPanelPad: the last tile's padding lanes are stored (their
  // weights and bias are zero-padded: relu(0) = 0 for finite inputs) and the columns past them up to
  // kPanelPad are zeroed, so padded buffers hold no garbage a vector loop over them could trip on.
  bool store_padding = false;
  // 0: B is [K][ldb]. Otherwise B is panel-packed: kPanelPad-column panels, each [K][kPanelPad] and
  // zero-padded, b_panel_stride floats apart (ldb is then kPanelPad). Contiguous panels stream from
  // memory with the hardware prefetcher and need no padded copy of the last one.
  int64_t b_panel_stride = 0;
};

// Channel padding of the units' intermediate buffers: a multiple of every variant's GEMM panel width.
constexpr int64_t kPanelPad = 32;

// One output row of a depthwise 3x3 (padding 1) on channels_last data:
// out[ow*out_ps + c] = bias[c] + sum_{kh,kw} w9[(kh*3+kw)*C + c] * rows[kh][(ow*stride-1+kw)*in_ps + c],
// rows[kh] being input row oh*stride-1+kh, or null where that row lies outside the image.
struct DwRowArgs {
  const float* rows[3];
  int64_t in_ps;  // floats between pixels of an input row
  int64_t W, Wo, C, stride;
  const float* w9;    // [9][C], tap-major
  const float* bias;  // [C]
  float* out;
  int64_t out_ps;
  bool relu = false;  // ReLU epilogue
};

// out[p*2B + 2j] = a[p*a_ps + j], out[p*2B + 2j + 1] = b[p*b_ps + j] for p < pixels, j < B.
struct InterleaveArgs {
  const float* a;
  int64_t a_ps;
  const float* b;
  int64_t b_ps;
  int64_t B, pixels;
  float* out;
};

// The network's stem for one image: maxpool3x3/2(relu(conv3x3/2(x) + bias)), both with padding 1,
// pooled rows [p0, p1). ReLU commutes with max, so it is applied once, after pooling. x is read
// through its strides (any layout); out is channels_last [Hp, Wp, Cout].
struct StemArgs {
  const float* x;
  int64_t x_sc, x_sh, x_sw;  // floats between channels, rows and columns of the image
  int64_t Cin, H, W;
  const float* w;          // [Cin*9][Cpad]: tap (ci, kh, kw) major, output channels zero-padded to Cpad
  const float* bias;       // [Cpad], zero-padded
  int64_t Cout, Cpad;      // Cpad: Cout rounded up to stem_channel_block()
  int64_t Hc, Wc, Hp, Wp;  // conv and pooled output sizes
  int64_t p0, p1;
  float* scratch;  // 3 * Wc * Cpad floats
  float* out;
};

struct Kernels {
  const char* isa;
  void (*gemm)(const GemmArgs&);
  void (*dw_row)(const DwRowArgs&);
  void (*interleave)(const InterleaveArgs&);
  void (*stem)(const StemArgs&);
  int64_t stem_channel_block;  // the stem's weights and bias are padded to a multiple of this
};

// The variants compiled into this library; each returns null where it was not compiled.
const Kernels* kernels_avx512();
const Kernels* kernels_avx2();
const Kernels& kernels_baseline();

// The fastest variant this CPU runs (decided once).
const Kernels& kernels();

}  // namespace shufflekernels::cpu
