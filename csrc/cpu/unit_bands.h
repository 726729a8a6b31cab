// The second pass of the engine's units over one band of output rows of one image: the depthwise rows,
// the last 1x1 and the interleave that writes the concat+shuffle, every intermediate in the caller's
// scratch. The unit ops (units.cpp) and the whole-network plan (network.cpp) run their bands here; each
// reads its weights in its own storage (GemmB).
#pragma once

#include <cstdint>

#include "engine.h"

namespace shufflekernels::cpu {

// A 1x1 weight as the GEMM's B (GemmArgs: ldb, and panel_stride for panel-packed weights) and its bias.
struct GemmB {
  const float* data;
  int64_t ldb;
  int64_t panel_stride;
  const float* bias;
};

// Floats of scratch a band of at most R rows needs.
inline int64_t split_band_floats(int64_t R, int64_t W, int64_t Bs) { return 2 * R * W * Bs; }
inline int64_t down_band_floats(int64_t R, int64_t Wo, int64_t Cs, int64_t Bs) { return R * Wo * (Cs + 3 * Bs); }

// Split unit, rows [h0, h1) of an image (at most R): d = dw(t1), y = relu(pw2(d)), out = interleave(x1, y).
// x and out: the image's [H, W, C] (C = 2B); t1: relu(pw1(x2)) of the image, [H, W, Bs]; dw: tap-major
// [9][Bs] weights and [Bs] bias.
inline void split_band(const Kernels& k, const float* x, const float* t1, float* out, int64_t H, int64_t W, int64_t B,
                       int64_t Bs, const float* dw_w9, const float* dw_bias, const GemmB& pw2, int64_t h0, int64_t h1,
                       int64_t R, float* scratch) {
  const int64_t C = 2 * B;
  float* d = scratch;
  float* y = scratch + R * W * Bs;
  for (int64_t h = h0; h < h1; ++h) {
    k.dw_row({{h > 0 ? t1 + (h - 1) * W * Bs : nullptr, t1 + h * W * Bs, h + 1 < H ? t1 + (h + 1) * W * Bs : nullptr},
              Bs,
              W,
              W,
              Bs,
              1,
              dw_w9,
              dw_bias,
              d + (h - h0) * W * Bs,
              Bs});
  }
  const int64_t pixels = (h1 - h0) * W;
  k.gemm({d, Bs, pw2.data, pw2.ldb, y, Bs, pixels, B, B, pw2.bias, true, false, pw2.panel_stride});
  k.interleave({x + h0 * W * C, C, y, Bs, B, pixels, out + h0 * W * C});
}

// Down unit, output rows [h0, h1) of an image (at most R): both branches' depthwise (stride 2) and 1x1,
// then the interleave. x: the image's [H, W, Cin]; t1: relu(pw1(x)), [H, W, Bs]; out: [Ho, Wo, 2B].
// dw1 reads x itself (pixels Cin floats apart, [9][Cin] weights); dw2 the padded t1 ([9][Bs]).
inline void down_band(const Kernels& k, const float* x, const float* t1, float* out, int64_t H, int64_t W, int64_t Wo,
                      int64_t Cin, int64_t B, const float* dw1_w9, const float* dw1_bias, const float* dw2_w9,
                      const float* dw2_bias, const GemmB& pw3, const GemmB& pw2, int64_t h0, int64_t h1, int64_t R,
                      float* scratch) {
  const int64_t Cs = (Cin + kPanelPad - 1) / kPanelPad * kPanelPad, Bs = (B + kPanelPad - 1) / kPanelPad * kPanelPad;
  float* d1 = scratch;
  float* d2 = d1 + R * Wo * Cs;
  float* y1 = d2 + R * Wo * Bs;
  float* y2 = y1 + R * Wo * Bs;
  auto row = [&](const float* image, int64_t stride_px, int64_t r) -> const float* {
    return r >= 0 && r < H ? image + r * W * stride_px : nullptr;
  };
  for (int64_t oh = h0; oh < h1; ++oh) {
    const int64_t ih = 2 * oh - 1;  // first input row of the window
    k.dw_row({{row(x, Cin, ih), row(x, Cin, ih + 1), row(x, Cin, ih + 2)},
              Cin,
              W,
              Wo,
              Cin,
              2,
              dw1_w9,
              dw1_bias,
              d1 + (oh - h0) * Wo * Cs,
              Cs});
    k.dw_row({{row(t1, Bs, ih), row(t1, Bs, ih + 1), row(t1, Bs, ih + 2)},
              Bs,
              W,
              Wo,
              Bs,
              2,
              dw2_w9,
              dw2_bias,
              d2 + (oh - h0) * Wo * Bs,
              Bs});
  }
  const int64_t pixels = (h1 - h0) * Wo;
  k.gemm({d1, Cs, pw3.data, pw3.ldb, y1, Bs, pixels, B, Cin, pw3.bias, true, false, pw3.panel_stride});
  k.gemm({d2, Bs, pw2.data, pw2.ldb, y2, Bs, pixels, B, B, pw2.bias, true, false, pw2.panel_stride});
  k.interleave({y1, Bs, y2, Bs, B, pixels, out + h0 * Wo * 2 * B});
}

}  // namespace shufflekernels::cpu
