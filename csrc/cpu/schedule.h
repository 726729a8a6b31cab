// How the CPU kernels split their work across threads: grain sizes for the per-element loops, the
// 1x1 GEMM over all pixels, and the units' two passes (every pixel's first 1x1, then bands of rows).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine.h"
#include "weights.h"

namespace shufflekernels::cpu {

// Work items smaller than this many elements are not worth a thread.
constexpr int64_t kGrainElements = 32768;

inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, elements_per_item));
}

// out = relu(A @ W + bias) over `pixels` rows of A, split evenly across threads: by rows where every
// thread gets enough of them for whole micro-tiles, else (the small late-stage images at batch 1) by
// output-channel panels, so neither thread idles.
inline void pointwise_all_pixels(const Kernels& k, const float* A, int64_t lda, const KMajor& w, const float* bias,
                                 int64_t c_out, int64_t c_in, int64_t pixels, float* out, int64_t ldc, bool relu = true,
                                 bool store_padding = false) {
  const int64_t threads = at::get_num_threads();
  constexpr int64_t kMinRowsPerTask = 48, kTargetRowsPerTask = 192, kPanel = kPanelPad;
  if (threads > 1 && pixels < threads * kMinRowsPerTask) {
    const int64_t panels = (c_out + kPanel - 1) / kPanel;
    at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
      // n0 on a panel boundary: packed weights (KMajor::at) are addressed by whole panels.
      const int64_t n0 = begin * kPanel, n1 = std::min(c_out, end * kPanel);
      k.gemm({A, lda, w.at(n0), w.ldb, out + n0, ldc, pixels, n1 - n0, c_in, bias + n0, relu, store_padding,
              w.panel_stride});
    });
    return;
  }
  const int64_t tasks = threads * std::max<int64_t>(1, pixels / (threads * kTargetRowsPerTask));
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    const int64_t p0 = pixels * begin / tasks, p1 = pixels * end / tasks;
    k.gemm({A + p0 * lda, lda, w.data, w.ldb, out + p0 * ldc, ldc, p1 - p0, c_out, c_in, bias, relu, store_padding,
            w.panel_stride});
  });
}

// Bands of output rows for the second pass of a unit: a multiple of the thread count per image (so a
// batch-1 image keeps every thread busy), of about kTargetPixels each. Band b of an image covers rows
// [b*H/bands, (b+1)*H/bands).
struct Bands {
  int64_t per_image, max_rows;
  int64_t first_row(int64_t b, int64_t H) const { return H * b / per_image; }
};

inline Bands bands_for(int64_t N, int64_t H, int64_t W) {
  constexpr int64_t kTargetPixels = 96;
  const int64_t threads = N >= at::get_num_threads() ? 1 : at::get_num_threads();
  int64_t per_image = threads * std::max<int64_t>(1, H * W / (threads * kTargetPixels));
  per_image = std::min(per_image, H);
  return {per_image, (H + per_image - 1) / per_image};
}

// A unit's second pass runs per band of rows, on an image whose first pass (t1) is complete. With at
// least one image per thread, each thread runs whole images, both passes, so an image's intermediate
// stays in its core's cache; with fewer (batch 1), every thread shares each pass of every image.
template <class Pass1, class Band>
void run_unit(int64_t N, int64_t pass1_rows, int64_t t1_floats_per_image, int64_t band_floats, const Bands& bands,
              int64_t out_rows, const at::Tensor& like, Pass1 pass1, Band band) {
  if (N >= at::get_num_threads()) {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> t1(t1_floats_per_image), scratch(band_floats);
      for (int64_t n = begin; n < end; ++n) {
        pass1(n * pass1_rows, (n + 1) * pass1_rows, t1.data(), /*parallel=*/false);
        for (int64_t b = 0; b < bands.per_image; ++b)
          band(n, bands.first_row(b, out_rows), bands.first_row(b + 1, out_rows), t1.data(), scratch.data());
      }
    });
    return;
  }
  at::Tensor t1 = at::empty({N * t1_floats_per_image}, like.options());
  float* t1p = t1.data_ptr<float>();
  pass1(0, N * pass1_rows, t1p, /*parallel=*/true);
  at::parallel_for(0, N * bands.per_image, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(band_floats);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands.per_image, b = task % bands.per_image;
      band(n, bands.first_row(b, out_rows), bands.first_row(b + 1, out_rows), t1p + n * t1_floats_per_image,
           scratch.data());
    }
  });
}

}  // namespace shufflekernels::cpu
