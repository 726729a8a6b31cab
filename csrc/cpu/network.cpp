// The whole ShuffleNetV2 forward on the CPU in one call: the `shufflenet` op (docs/design.md, "The whole
// network"), float32, any input layout.
//
// Called layer by layer, a batch-1 forward enters about 36 OpenMP parallel regions, makes about 19
// dispatcher calls and allocates every activation; on a 2-core AVX2 machine the time between layers
// was a third of the forward. Here a Plan, made once per set of weights, holds every weight in the
// layout the engine reads (1x1 weights packed into GEMM panels, depthwise weights tap-major and padded,
// the stem's weights per output-channel block), and one parallel region runs every layer:
// - with at least one image per thread, each thread runs its images through the whole network alone,
//   with no barrier (an image's activations stay in its core's caches);
// - with fewer (batch 1), every layer is split across the threads, with a barrier only where a layer
//   reads what another thread wrote.
// Activations live in an arena the plan keeps, grown to the largest batch seen. A plan is remade when
// any weight's version counter or data pointer changes, so in-place updates through torch are seen.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <omp.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "../contract.h"
#include "../index_math.h"
#include "../network_composite.h"
#include "../network_params.h"
#include "../plan_cache.h"
#include "engine.h"
#include "unit_bands.h"
#include "weights.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

// A 1x1 weight [Cout, Cin, 1, 1] (any strides) as the GEMM's panel-major B (GemmArgs::b_panel_stride).
struct Panels {
  std::vector<float> data;
  int64_t c_out = 0, c_in = 0;
  std::vector<float> bias;  // [Cout]

  Panels() = default;
  Panels(const Tensor& w, const Tensor& b) : c_out(w.size(0)), c_in(w.size(1)) {
    const int64_t P = kPanelPad, panels = (c_out + P - 1) / P;
    data.assign(panels * c_in * P, 0.f);
    const auto wa = w.accessor<float, 4>();
    for (int64_t n = 0; n < c_out; ++n)
      for (int64_t k = 0; k < c_in; ++k) data[(n / P) * c_in * P + k * P + n % P] = wa[n][k][0][0];
    const auto ba = b.accessor<float, 1>();
    bias.resize(c_out);
    for (int64_t n = 0; n < c_out; ++n) bias[n] = ba[n];
  }
  const float* at(int64_t n0) const { return data.data() + (n0 / kPanelPad) * c_in * kPanelPad + n0 % kPanelPad; }
  int64_t panel_stride() const { return c_in * kPanelPad; }
};

// A depthwise weight [C, 1, 3, 3] tap-major [9][Cp] and its bias [Cp], zero-padded from C to Cp.
struct Taps {
  std::vector<float> w9, bias;
  Taps() = default;
  Taps(const Tensor& w, const Tensor& b, int64_t Cp) : w9(9 * Cp, 0.f), bias(Cp, 0.f) {
    const auto wa = w.accessor<float, 4>();
    const auto ba = b.accessor<float, 1>();
    for (int64_t c = 0; c < w.size(0); ++c) {
      for (int64_t t = 0; t < 9; ++t) w9[t * Cp + c] = wa[c][0][t / 3][t % 3];
      bias[c] = ba[c];
    }
  }
};

struct UnitPlan {
  bool down;
  int64_t c_in, B;       // input channels; branch channels (the output has 2B)
  Panels pw1, pw2, pw3;  // pw3: the down unit's branch 1
  Taps dw1, dw2;         // dw1: the down unit's branch 1, over x itself (unpadded); dw2 over the padded t1
};

UnitPlan down_unit_plan(const DownUnitParams& d, int64_t c_in) {
  UnitPlan p;
  p.down = true;
  p.c_in = c_in;
  p.B = d.pw1_w.size(0);
  p.dw1 = Taps(d.dw1_w, d.dw1_b, c_in);
  p.pw3 = Panels(d.pw3_w, d.pw3_b);
  p.pw1 = Panels(d.pw1_w, d.pw1_b);
  p.dw2 = Taps(d.dw2_w, d.dw2_b, round_up(p.B, kPanelPad));
  p.pw2 = Panels(d.pw2_w, d.pw2_b);
  return p;
}

UnitPlan split_unit_plan(const SplitUnitParams& s, int64_t c_in) {
  UnitPlan p;
  p.down = false;
  p.c_in = c_in;
  p.B = c_in / 2;
  p.pw1 = Panels(s.pw1_w, s.pw1_b);
  p.dw2 = Taps(s.dw_w, s.dw_b, round_up(p.B, kPanelPad));
  p.pw2 = Panels(s.pw2_w, s.pw2_b);
  return p;
}

// Where one call's layers put their outputs, for an image of H x W.
struct Geometry {
  struct Unit {
    int64_t H, W, Ho, Wo;
  };
  int64_t H, W, Hc, Wc, Hp, Wp;  // input, stem conv, stem pool
  std::vector<Unit> units;
  int64_t H5, W5;                                          // conv5
  int64_t act_floats = 0, t1_floats = 0, band_floats = 0;  // per image (scratch: per band task)
};

// Output rows per task of a unit's second pass: about 96 pixels, so that its intermediates stay in L1/L2
// and a batch-1 image still makes several tasks per thread.
inline int64_t band_rows(int64_t Ho, int64_t Wo) { return std::clamp<int64_t>(96 / std::max<int64_t>(Wo, 1), 1, Ho); }

// Bands of a unit's output rows: whole bands of at most band_rows rows, a multiple of the threads that
// share one image.
inline int64_t bands_of(int64_t Ho, int64_t Wo, int T) {
  const int64_t bands = (Ho + band_rows(Ho, Wo) - 1) / band_rows(Ho, Wo);
  return std::min<int64_t>(Ho, (bands + T - 1) / T * T);
}

class Plan {
 public:
  Plan(at::TensorList params, at::IntArrayRef stage_repeats) {
    const NetworkParams net = parse_network_params(params, stage_repeats);
    stem_ = stem_weights(kernels(), net.stem.weight, net.stem.bias);
    int64_t c = stem_.c_out;
    for (const UnitParams& unit : net.units) {
      units_.push_back(unit.kind() == UnitKind::Down ? down_unit_plan(unit.down(), c)
                                                     : split_unit_plan(unit.split(), c));
      c = 2 * units_.back().B;
    }
    conv5_ = Panels(net.head.conv5_w, net.head.conv5_b);
    fc_ = Panels(net.head.fc_w, net.head.fc_b);
  }

  Tensor forward(const Tensor& x) const;

 private:
  Geometry geometry(const Tensor& x) const;
  struct Buffers;
  const float* units(const Tensor& x, const Geometry& g, int64_t n0, int64_t n1, const Buffers& buf, int t, int T,
                     bool team) const;
  void head(const float* features, int64_t image_stride, const Geometry& g, int64_t N, float* conv5_out,
            int64_t conv5_stride, float* pooled, float* logits, int t, int T) const;

  StemWeights stem_;
  std::vector<UnitPlan> units_;
  Panels conv5_, fc_;
  mutable std::mutex arena_mutex_;
  mutable std::vector<float> arena_;
};

Geometry Plan::geometry(const Tensor& x) const {
  Geometry g;
  g.H = x.size(2);
  g.W = x.size(3);
  g.Hc = stem_conv_out_size(g.H);
  g.Wc = stem_conv_out_size(g.W);
  g.Hp = stem_out_size(g.H);
  g.Wp = stem_out_size(g.W);
  int64_t H = g.Hp, W = g.Wp;
  g.act_floats = H * W * stem_.c_out;
  for (const UnitPlan& u : units_) {
    const int64_t Ho = u.down ? dwconv3x3_out_size(H, 2) : H, Wo = u.down ? dwconv3x3_out_size(W, 2) : W;
    const int64_t Bs = round_up(u.B, kPanelPad), Cs = round_up(u.c_in, kPanelPad);
    g.units.push_back({H, W, Ho, Wo});
    g.act_floats = std::max(g.act_floats, Ho * Wo * 2 * u.B);
    g.t1_floats = std::max(g.t1_floats, H * W * Bs);
    const int64_t R = band_rows(Ho, Wo);
    g.band_floats = std::max(g.band_floats, u.down ? down_band_floats(R, Wo, Cs, Bs) : split_band_floats(R, Wo, Bs));
    H = Ho;
    W = Wo;
  }
  g.H5 = H;
  g.W5 = W;
  g.act_floats = std::max(g.act_floats, H * W * conv5_.c_out);
  return g;
}

// Where a call's activations go: act[0]/act[1] ping-pong between layers, t1 holds a unit's first 1x1,
// pooled the mean features, scratch a band task's intermediates (one per thread).
struct Plan::Buffers {
  float* act[2];
  float* t1;
  float* pooled;
  float* scratch;  // per thread: band_floats + stem scratch
  int64_t scratch_floats;
};

// [begin, end) of `items` for thread t of T.
inline std::pair<int64_t, int64_t> share(int64_t items, int t, int T) { return {items * t / T, items * (t + 1) / T}; }

// Thread t's part of out = act(A @ B + bias) over `rows` rows: by rows where every thread gets enough
// of them for whole micro-tiles, else (the small late-stage maps at batch 1) by output-channel panels.
void gemm_share(const Kernels& k, const float* A, int64_t lda, const Panels& w, float* out, int64_t ldc, int64_t rows,
                bool relu, bool store_padding, int t, int T) {
  constexpr int64_t kMinRowsPerThread = 48;
  if (T > 1 && rows < T * kMinRowsPerThread) {
    const auto [p0, p1] = share((w.c_out + kPanelPad - 1) / kPanelPad, t, T);
    const int64_t n0 = p0 * kPanelPad, n1 = std::min(w.c_out, p1 * kPanelPad);
    if (n1 > n0)
      k.gemm({A, lda, w.at(n0), kPanelPad, out + n0, ldc, rows, n1 - n0, w.c_in, w.bias.data() + n0, relu,
              store_padding, w.panel_stride()});
    return;
  }
  const auto [r0, r1] = share(rows, t, T);
  if (r1 > r0)
    k.gemm({A + r0 * lda, lda, w.data.data(), kPanelPad, out + r0 * ldc, ldc, r1 - r0, w.c_out, w.c_in, w.bias.data(),
            relu, store_padding, w.panel_stride()});
}

// The stem and the units for images [n0, n1) (thread t of a team of T, or alone); returns where the last
// unit's output lies, one image every g.act_floats.
const float* Plan::units(const Tensor& x, const Geometry& g, int64_t n0, int64_t n1, const Buffers& buf, int t, int T,
                         bool team) const {
  const Kernels& k = kernels();
  const int64_t N = n1 - n0;
  auto sync = [&] {
    if (team) {
#pragma omp barrier
    }
  };
  float* scratch = buf.scratch + t * buf.scratch_floats;
  float* in = buf.act[0];
  float* out = buf.act[1];

  // Stem: bands of pooled rows, as many as threads.
  {
    const int64_t bands = std::min<int64_t>(g.Hp, T);
    const auto [s0, s1] = share(N * bands, t, T);
    for (int64_t task = s0; task < s1; ++task) {
      const int64_t n = task / bands, band = task % bands;
      StemArgs a{x.const_data_ptr<float>() + (n0 + n) * x.stride(0),
                 x.stride(1),
                 x.stride(2),
                 x.stride(3),
                 x.size(1),
                 g.H,
                 g.W,
                 stem_.weight.data(),
                 stem_.bias.data(),
                 stem_.c_out,
                 stem_.c_pad,
                 g.Hc,
                 g.Wc,
                 g.Hp,
                 g.Wp,
                 g.Hp * band / bands,
                 g.Hp * (band + 1) / bands,
                 scratch + g.band_floats,
                 in + n * g.act_floats};
      k.stem(a);
    }
    sync();
  }

  for (size_t ui = 0; ui < units_.size(); ++ui) {
    const UnitPlan& u = units_[ui];
    const Geometry::Unit& s = g.units[ui];
    const int64_t C = u.c_in, B = u.B, Bs = round_up(B, kPanelPad);
    const int64_t H = s.H, W = s.W, Ho = s.Ho, Wo = s.Wo;
    // Pass 1: t1 = relu(pw1(x2)) (split unit: x2 is each pixel's second half) or relu(pw1(x)) (down
    // unit), over every pixel of the images, rows Bs floats apart. Images are act_floats apart.
    for (int64_t n = 0; n < N; ++n) {
      const float* xin = in + n * g.act_floats + (u.down ? 0 : B);
      gemm_share(k, xin, C, u.pw1, buf.t1 + n * g.t1_floats, Bs, H * W, true, true, t, T);
    }
    sync();
    // Pass 2: bands of output rows; every intermediate in this thread's scratch.
    const int64_t bands = bands_of(Ho, Wo, T), R = band_rows(Ho, Wo);
    const auto [b0, b1] = share(N * bands, t, T);
    for (int64_t task = b0; task < b1; ++task) {
      const int64_t n = task / bands, h0 = Ho * (task % bands) / bands, h1 = Ho * (task % bands + 1) / bands;
      if (h1 == h0) continue;
      const float* t1 = buf.t1 + n * g.t1_floats;
      const float* xi = in + n * g.act_floats;
      float* o = out + n * g.act_floats;
      const GemmB pw2{u.pw2.data.data(), kPanelPad, u.pw2.panel_stride(), u.pw2.bias.data()};
      if (u.down) {
        const GemmB pw3{u.pw3.data.data(), kPanelPad, u.pw3.panel_stride(), u.pw3.bias.data()};
        down_band(k, xi, t1, o, H, W, Wo, C, B, u.dw1.w9.data(), u.dw1.bias.data(), u.dw2.w9.data(), u.dw2.bias.data(),
                  pw3, pw2, h0, h1, R, scratch);
      } else {
        split_band(k, xi, t1, o, H, W, B, Bs, u.dw2.w9.data(), u.dw2.bias.data(), pw2, h0, h1, R, scratch);
      }
    }
    sync();
    std::swap(in, out);
  }

  return in;
}

// conv5 (1x1 + bias + ReLU), the global mean and the classifier for N images whose stage-4 features lie
// image_stride floats apart (pixel-major, C4 channels a pixel), as thread t of a team of T; conv5's
// output goes to conv5_out, conv5_stride floats an image. Features packed back to back (image_stride
// one image's pixels) make conv5 one GEMM over every image's pixels: at batch 16 that is 784 rows in
// place of sixteen GEMMs of 49, and the classifier reads its weights once, not once an image.
void Plan::head(const float* features, int64_t image_stride, const Geometry& g, int64_t N, float* conv5_out,
                int64_t conv5_stride, float* pooled, float* logits, int t, int T) const {
  const Kernels& k = kernels();
  auto sync = [&] {
    if (T > 1) {
#pragma omp barrier
    }
  };
  const int64_t C4 = units_.back().B * 2, C5 = conv5_.c_out, HW5 = g.H5 * g.W5;
  if (image_stride == HW5 * C4 && conv5_stride == HW5 * C5) {
    gemm_share(k, features, C4, conv5_, conv5_out, C5, N * HW5, true, false, t, T);
  } else {
    for (int64_t n = 0; n < N; ++n)
      gemm_share(k, features + n * image_stride, C4, conv5_, conv5_out + n * conv5_stride, C5, HW5, true, false, t, T);
  }
  sync();
  {
    const auto [c0, c1] = share(C5, t, T);
    for (int64_t n = 0; n < N; ++n) {
      const float* feat = conv5_out + n * conv5_stride;
      float* p = pooled + n * C5;
      for (int64_t c = c0; c < c1; ++c) p[c] = 0.f;
      for (int64_t q = 0; q < HW5; ++q)
        for (int64_t c = c0; c < c1; ++c) p[c] += feat[q * C5 + c];
      for (int64_t c = c0; c < c1; ++c) p[c] /= static_cast<float>(HW5);
    }
  }
  sync();
  gemm_share(k, pooled, C5, fc_, logits, fc_.c_out, N, false, false, t, T);
}

Tensor Plan::forward(const Tensor& x) const {
  const int64_t N = x.size(0);
  Tensor logits = at::empty({N, fc_.c_out}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0) return logits;
  const Geometry g = geometry(x);
  const int T = std::max(1, at::get_num_threads());
  // With at least one image per thread, each thread runs the stem and units of one image at a time in
  // buffers of its own, and the head then runs once for the whole batch, from the stage-4 features
  // gathered back to back.
  const bool team = N < T;
  const int64_t images = team ? N : T;  // images whose activations are live at once
  const int64_t stem_scratch = 3 * g.Wc * stem_.c_pad;
  Buffers buf{};
  buf.scratch_floats = g.band_floats + stem_scratch;
  const int64_t C4 = units_.back().B * 2, C5 = conv5_.c_out, HW5 = g.H5 * g.W5;
  const int64_t batch_head_floats = team ? 0 : N * (HW5 * (C4 + C5) + C5);
  const int64_t floats = images * (2 * g.act_floats + g.t1_floats + C5) + T * buf.scratch_floats + batch_head_floats;
  // The arena is reused across calls; a call that finds it busy (another thread forwarding through the
  // same model) takes a buffer of its own.
  std::unique_lock<std::mutex> lock(arena_mutex_, std::try_to_lock);
  std::vector<float> own;
  std::vector<float>& arena = lock.owns_lock() ? arena_ : own;
  if (static_cast<int64_t>(arena.size()) < floats) arena.resize(floats);
  float* p = arena.data();
  buf.act[0] = p;
  buf.act[1] = p + images * g.act_floats;
  buf.t1 = p + 2 * images * g.act_floats;
  buf.pooled = buf.t1 + images * g.t1_floats;
  buf.scratch = buf.pooled + images * C5;
  float* const features = buf.scratch + T * buf.scratch_floats;  // batch head: [N, HW5, C4]
  float* const conv5_out = features + N * HW5 * C4;              // [N, HW5, C5]
  float* const pooled = conv5_out + N * HW5 * C5;                // [N, C5]
  float* out = logits.data_ptr<float>();

#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num(), team_size = omp_get_num_threads();
    if (team) {
      const float* last = units(x, g, 0, N, buf, t, team_size, true);
      float* other = last == buf.act[0] ? buf.act[1] : buf.act[0];
      head(last, g.act_floats, g, N, other, g.act_floats, buf.pooled, out, t, team_size);
    } else {
      // Image n runs on thread n % team_size, in the buffers of that thread's slot.
      Buffers mine = buf;
      mine.act[0] += t * g.act_floats;
      mine.act[1] += t * g.act_floats;
      mine.t1 += t * g.t1_floats;
      mine.pooled += t * C5;
      mine.scratch += t * buf.scratch_floats;
      mine.scratch_floats = 0;
      for (int64_t n = t; n < N; n += team_size) {
        const float* last = units(x, g, n, n + 1, mine, 0, 1, false);
        std::copy(last, last + HW5 * C4, features + n * HW5 * C4);
      }
#pragma omp barrier
      head(features, HW5 * C4, g, N, conv5_out, HW5 * C5, pooled, out, t, team_size);
    }
  }
  return logits;
}

PlanCache<Plan>& plans() {
  static auto* const cache = new PlanCache<Plan>();  // never destroyed: ops may run during exit
  return *cache;
}

Tensor shufflenet_cpu(const Tensor& x, at::TensorList params, at::IntArrayRef stage_repeats) {
  check_shufflenet(x, params, stage_repeats);
  // The plan serves float32 weights it can read with accessors; anything else runs layer by layer.
  const bool planned = x.scalar_type() == at::kFloat && x.is_cpu();
  if (!planned) return shufflenet_composite("shufflekernels", x, params, stage_repeats);
  return plans().get(params, [&] { return std::make_shared<const Plan>(params, stage_repeats); })->forward(x);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) { m.impl("shufflenet", &shufflenet_cpu); }

}  // namespace shufflekernels::cpu
