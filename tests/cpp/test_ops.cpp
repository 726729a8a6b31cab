// C++ tests of the shufflekernels op library, run by ctest (CMakeLists.txt).
//
// The ops are called the way a libtorch user reaches them, through the dispatcher by schema name, and
// compared against ATen compositions of the math in docs/design.md ("Op semantics"), computed here; the
// Python tests compare against shufflekernels.reference, so the two suites do not share a ground truth
// that could be wrong in the same way. The index math the CPU and CUDA kernels share
// (csrc/index_math.h) is tested directly.
//
// No test framework: a check counts as passed or failed, failures print where and why, and the last
// line is "N passed, M failed"; the exit status is non-zero when anything failed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "build_info.h"
#include "index_math.h"

namespace {

using at::Tensor;

int g_passed = 0;
int g_failed = 0;

void record(bool ok, const std::string& what, const char* file, int line) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what.c_str());
  }
}

#define SK_CHECK(cond, what) record(static_cast<bool>(cond), std::string(#cond) + " -- " + (what), __FILE__, __LINE__)

std::string describe(const Tensor& t) {
  std::ostringstream s;
  s << t.scalar_type() << t.sizes() << " strides " << t.strides();
  return s.str();
}

// Exact comparison: the permutations move bytes, so anything but equality is a bug.
// `got` may live on any device; `want` is computed on the CPU.
void expect_equal(const Tensor& got_any, const Tensor& want, const std::string& what, const char* file, int line) {
  const Tensor got = got_any.cpu();
  const bool ok = got.sizes() == want.sizes() && got.scalar_type() == want.scalar_type() && at::equal(got, want);
  record(ok, what + ": got " + describe(got) + ", want " + describe(want), file, line);
}

void expect_close(const Tensor& got_any, const Tensor& want, double atol, double rtol, const std::string& what,
                  const char* file, int line) {
  const Tensor got = got_any.cpu();
  bool ok = got.sizes() == want.sizes();
  std::string detail;
  if (ok) {
    const Tensor g = got.to(at::kFloat), w = want.to(at::kFloat);
    ok = at::allclose(g, w, rtol, atol);
    if (!ok && g.numel() > 0) detail = ", max |diff| " + std::to_string((g - w).abs().max().item<double>());
  }
  record(ok, what + ": got " + describe(got) + ", want " + describe(want) + detail, file, line);
}

#define EXPECT_EQUAL(got, want, what) expect_equal(got, want, what, __FILE__, __LINE__)
#define EXPECT_CLOSE(got, want, atol, rtol, what) expect_close(got, want, atol, rtol, what, __FILE__, __LINE__)

// Runs one test; an exception escaping it is a failure of that test, not the end of the run.
void run(const char* name, const std::function<void()>& test) {
  const int failed_before = g_failed;
  try {
    test();
  } catch (const std::exception& e) {
    record(false, std::string("unexpected exception: ") + e.what(), name, 0);
  }
  std::printf("%s %s\n", g_failed == failed_before ? "ok  " : "FAIL", name);
}

// ---------------------------------------------------------------------------------------------------
// The ops, by schema name. The signatures follow csrc/schema.cpp; a mismatch throws at lookup.
// ---------------------------------------------------------------------------------------------------

using OptTensor = std::optional<Tensor>;

// Qualified as sk::..., since ATen has an at::channel_shuffle of its own that argument-dependent lookup
// would find for an unqualified call.
namespace sk {

template <typename Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

Tensor channel_shuffle(const Tensor& x, int64_t groups) {
  static auto h = op<Tensor(const Tensor&, int64_t)>("shufflekernels::channel_shuffle");
  return h.call(x, groups);
}

Tensor shuffle_cat(at::TensorList tensors) {
  static auto h = op<Tensor(at::TensorList)>("shufflekernels::shuffle_cat");
  return h.call(tensors);
}

Tensor dwconv3x3(const Tensor& x, const Tensor& w, const OptTensor& b, int64_t stride, bool relu) {
  static auto h =
      op<Tensor(const Tensor&, const Tensor&, const OptTensor&, int64_t, bool)>("shufflekernels::dwconv3x3");
  return h.call(x, w, b, stride, relu);
}

struct SplitParams {
  Tensor pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b;
};

Tensor split_unit(const Tensor& x, const SplitParams& p) {
  using Sig =
      Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&);
  static auto h = op<Sig>("shufflekernels::split_unit");
  return h.call(x, p.pw1_w, p.pw1_b, p.dw_w, p.dw_b, p.pw2_w, p.pw2_b);
}

struct DownParams {
  Tensor dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b;
};

Tensor down_unit(const Tensor& x, const DownParams& p) {
  using Sig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&);
  static auto h = op<Sig>("shufflekernels::down_unit");
  return h.call(x, p.dw1_w, p.dw1_b, p.pw3_w, p.pw3_b, p.pw1_w, p.pw1_b, p.dw2_w, p.dw2_b, p.pw2_w, p.pw2_b);
}

}  // namespace sk

// ---------------------------------------------------------------------------------------------------
// The reference: ATen compositions of the definitions in docs/design.md, "Op semantics".
// ---------------------------------------------------------------------------------------------------

// [N, g, C/g, H, W] -> [N, C/g, g, H, W]: out[n, j*g + i] = x[n, i*(C/g) + j].
Tensor ref_shuffle(const Tensor& x, int64_t g) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  return x.reshape({N, g, C / g, H, W}).transpose(1, 2).reshape({N, C, H, W});
}

Tensor ref_dw(const Tensor& x, const Tensor& w, const OptTensor& b, int64_t stride) {
  return at::conv2d(x, w, b, {stride, stride}, {1, 1}, {1, 1}, x.size(1));
}

Tensor ref_pw(const Tensor& x, const Tensor& w, const Tensor& b) { return at::conv2d(x, w, b); }

Tensor ref_split_unit(const Tensor& x, const sk::SplitParams& p) {
  const int64_t cb = x.size(1) / 2;
  Tensor x1 = x.narrow(1, 0, cb), x2 = x.narrow(1, cb, cb);
  Tensor y = at::relu(ref_pw(x2, p.pw1_w, p.pw1_b));
  y = ref_dw(y, p.dw_w, p.dw_b, 1);
  y = at::relu(ref_pw(y, p.pw2_w, p.pw2_b));
  return ref_shuffle(at::cat({x1, y}, 1), 2);
}

Tensor ref_down_unit(const Tensor& x, const sk::DownParams& p) {
  Tensor b1 = at::relu(ref_pw(ref_dw(x, p.dw1_w, p.dw1_b, 2), p.pw3_w, p.pw3_b));
  Tensor b2 = at::relu(ref_pw(x, p.pw1_w, p.pw1_b));
  b2 = at::relu(ref_pw(ref_dw(b2, p.dw2_w, p.dw2_b, 2), p.pw2_w, p.pw2_b));
  return ref_shuffle(at::cat({b1, b2}, 1), 2);
}

// ---------------------------------------------------------------------------------------------------
// Inputs in the layouts the kernels must accept.
// ---------------------------------------------------------------------------------------------------

enum class Form { NCHW, ChannelsLast, Strided };

const char* form_name(Form f) {
  return f == Form::NCHW ? "NCHW" : f == Form::ChannelsLast ? "channels_last" : "strided";
}

// The values of `x` in the given form. Strided: a view dense in neither layout (every other column of
// a wider tensor), which the kernels must copy or read correctly, never misread.
Tensor in_form(const Tensor& x, Form f) {
  switch (f) {
    case Form::NCHW: return x.contiguous();
    case Form::ChannelsLast: return x.contiguous(at::MemoryFormat::ChannelsLast);
    case Form::Strided: {
      auto sizes = x.sizes().vec();
      sizes[3] *= 2;
      Tensor wide = at::zeros(sizes, x.options());
      Tensor view = wide.slice(3, 0, sizes[3], 2);
      view.copy_(x);
      return view;
    }
  }
  return x;
}

// Whether the output keeps the memory format of the input `x` given in form `f` (docs/design.md,
// "Layouts"); only asked where the input's format is unambiguous (more than one channel and more than
// one pixel: otherwise NCHW and channels_last strides describe the same memory).
bool keeps_format(const Tensor& out, const Tensor& x, Form f) {
  if (x.size(1) <= 1 || x.size(2) * x.size(3) <= 1 || x.numel() == 0) return true;
  return f == Form::ChannelsLast ? out.is_contiguous(at::MemoryFormat::ChannelsLast) : out.is_contiguous();
}

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

const Form kForms[] = {Form::NCHW, Form::ChannelsLast, Form::Strided};

// ---------------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------------

void test_index_math() {
  using namespace shufflekernels;
  for (int64_t g = 1; g <= 6; ++g) {
    for (int64_t cpg = 1; cpg <= 7; ++cpg) {
      const int64_t C = g * cpg;
      const std::string where = "g=" + std::to_string(g) + " cpg=" + std::to_string(cpg);
      std::vector<int> hits(C, 0);
      bool in_range = true, inverse = true, spec = true;
      for (int64_t c = 0; c < C; ++c) {
        const ShuffleSource s = shuffle_source(c, g);
        if (s.group < 0 || s.group >= g || s.channel < 0 || s.channel >= cpg) {
          in_range = false;
          continue;
        }
        ++hits[s.group * cpg + s.channel];
        inverse = inverse && shuffle_destination(s.group, s.channel, g) == c;
      }
      for (int64_t i = 0; i < g; ++i) {
        for (int64_t j = 0; j < cpg; ++j) {
          // docs/design.md, "Op semantics": out[n, j*g + i] = x[n, i*(C/g) + j].
          spec = spec && shuffle_destination(i, j, g) == j * g + i;
          const ShuffleSource s = shuffle_source(shuffle_destination(i, j, g), g);
          inverse = inverse && s.group == i && s.channel == j;
        }
      }
      bool bijective = true;
      for (int h : hits) bijective = bijective && h == 1;
      SK_CHECK(in_range, where);
      SK_CHECK(inverse, where);
      SK_CHECK(spec, where);
      SK_CHECK(bijective, where);
    }
  }
  for (int64_t stride = 1; stride <= 2; ++stride) {
    for (int64_t in = 1; in <= 40; ++in) {
      // Count the windows: output o reads padded positions o*stride - 1 .. o*stride + 1, and the
      // padded input spans -1 .. in.
      int64_t count = 0;
      while (count * stride + 1 <= in) ++count;
      const int64_t out = dwconv3x3_out_size(in, stride);
      const std::string where = "in=" + std::to_string(in) + " stride=" + std::to_string(stride);
      SK_CHECK(out == count, where + " out=" + std::to_string(out) + " count=" + std::to_string(count));
      SK_CHECK(out == (in + 2 * 1 - 3) / stride + 1, where);
    }
  }
}

// Every op of the shufflekernels library that computes a tensor (the contract's ops: the registry's, which
// tests/test_registry.py holds equal to the dispatcher; prepack, a hint with no result, is not one), found
// by walking the dispatcher rather than from a list here, which could go stale.
void test_registration() {
  int ops = 0;
  for (const c10::OperatorName& op : c10::Dispatcher::singleton().getAllOpNames()) {
    if (op.name.rfind("shufflekernels::", 0) != 0) continue;
    auto handle = c10::Dispatcher::singleton().findSchema(op);
    if (!handle || handle->schema().returns().size() != 1) continue;
    ++ops;
    SK_CHECK(handle->hasKernelForDispatchKey(c10::DispatchKey::CPU), op.name);
    // The CUDA kernels are registered exactly when this build compiled them.
    SK_CHECK(handle->hasKernelForDispatchKey(c10::DispatchKey::CUDA) == (SK_WITH_CUDA != 0), op.name);
  }
  SK_CHECK(ops > 0, "no shufflekernels op is registered: is libshufflekernels_ops linked?");
}

// The op tests run on the CPU and, where the CUDA kernels are built and a GPU is present, on CUDA;
// inputs are made on the CPU, moved, and put into each form on the device, and results are compared
// with the reference computed on the CPU.
std::string on(at::Device dev) { return " on " + dev.str(); }

sk::SplitParams to_device(const sk::SplitParams& p, at::Device d) {
  return {p.pw1_w.to(d), p.pw1_b.to(d), p.dw_w.to(d), p.dw_b.to(d), p.pw2_w.to(d), p.pw2_b.to(d)};
}

sk::DownParams to_device(const sk::DownParams& p, at::Device d) {
  return {p.dw1_w.to(d), p.dw1_b.to(d), p.pw3_w.to(d), p.pw3_b.to(d), p.pw1_w.to(d),
          p.pw1_b.to(d), p.dw2_w.to(d), p.dw2_b.to(d), p.pw2_w.to(d), p.pw2_b.to(d)};
}

void test_channel_shuffle(at::Device dev) {
  struct Case {
    int64_t N, C, H, W, g;
  };
  const Case cases[] = {{2, 8, 5, 7, 2}, {1, 12, 3, 3, 3}, {3, 12, 1, 9, 4}, {2, 6, 4, 4, 1},
                        {1, 6, 1, 1, 6}, {2, 10, 3, 2, 5}, {0, 4, 3, 3, 2}};
  const at::ScalarType dtypes[] = {at::kFloat, at::kHalf, at::kBFloat16};
  for (const Case& c : cases) {
    for (at::ScalarType dt : dtypes) {
      const Tensor base = at::randn({c.N, c.C, c.H, c.W}).to(dt);
      for (Form f : kForms) {
        const Tensor x = in_form(base.to(dev), f);
        const std::string what = "channel_shuffle " + shape_str(x.sizes()) + " g=" + std::to_string(c.g) + " " +
                                 std::string(c10::toString(dt)) + " " + form_name(f) + on(dev);
        const Tensor out = sk::channel_shuffle(x, c.g);
        EXPECT_EQUAL(out, ref_shuffle(base, c.g), what);
        SK_CHECK(keeps_format(out, x, f), what);
      }
    }
  }
}

void test_shuffle_cat(at::Device dev) {
  struct Case {
    int64_t N, C, H, W, g;
  };
  const Case cases[] = {{2, 4, 5, 7, 2}, {1, 3, 3, 3, 3}, {2, 5, 1, 6, 2},
                        {1, 1, 2, 2, 4}, {1, 2, 3, 3, 1}, {0, 3, 2, 2, 2}};
  for (const Case& c : cases) {
    for (at::ScalarType dt : {at::kFloat, at::kHalf}) {
      std::vector<Tensor> parts;
      for (int64_t i = 0; i < c.g; ++i) parts.push_back(at::randn({c.N, c.C, c.H, c.W}).to(dt));
      const Tensor want = ref_shuffle(at::cat(parts, 1), c.g);
      for (Form f : kForms) {
        std::vector<Tensor> xs;
        for (const Tensor& p : parts) xs.push_back(in_form(p.to(dev), f));
        const std::string what = "shuffle_cat " + std::to_string(c.g) + " x " + shape_str(parts[0].sizes()) + " " +
                                 std::string(c10::toString(dt)) + " " + form_name(f) + on(dev);
        const Tensor out = sk::shuffle_cat(xs);
        EXPECT_EQUAL(out, want, what);
        SK_CHECK(keeps_format(out, xs[0], f), what);
      }
      // Mixed layouts: the first tensor decides the output's.
      if (c.g >= 2) {
        std::vector<Tensor> xs;
        for (size_t i = 0; i < parts.size(); ++i) xs.push_back(in_form(parts[i].to(dev), kForms[i % 3]));
        EXPECT_EQUAL(sk::shuffle_cat(xs), want, "shuffle_cat mixed layouts " + shape_str(parts[0].sizes()) + on(dev));
      }
    }
  }
}

void test_dwconv3x3(at::Device dev) {
  struct Shape {
    int64_t N, C, H, W;
  };
  // Odd sizes, 1x1 and 2x3 images (every tap on a border), and a row wider than the CPU kernel's
  // 256-column chunk.
  const Shape shapes[] = {{2, 3, 7, 5}, {1, 4, 1, 1}, {1, 2, 2, 3}, {2, 16, 9, 9}, {1, 3, 4, 300}, {0, 3, 5, 5}};
  for (const Shape& s : shapes) {
    const Tensor x0 = at::randn({s.N, s.C, s.H, s.W});
    const Tensor w = at::randn({s.C, 1, 3, 3});
    const Tensor b = at::randn({s.C});
    for (int64_t stride : {1, 2}) {
      for (bool relu : {false, true}) {
        for (bool with_bias : {true, false}) {
          const OptTensor bias = with_bias ? OptTensor(b) : std::nullopt;
          Tensor want = ref_dw(x0, w, bias, stride);
          if (relu) want = at::relu(want);
          const OptTensor bias_d = with_bias ? OptTensor(b.to(dev)) : std::nullopt;
          for (Form f : kForms) {
            const Tensor x = in_form(x0.to(dev), f);
            const std::string what = "dwconv3x3 " + shape_str(x.sizes()) + " stride=" + std::to_string(stride) +
                                     (relu ? " relu" : "") + (with_bias ? " bias" : " no-bias") + " " + form_name(f) +
                                     on(dev);
            const Tensor out = sk::dwconv3x3(x, w.to(dev), bias_d, stride, relu);
            EXPECT_CLOSE(out, want, 1e-5, 1e-5, what);
            SK_CHECK(keeps_format(out, x, f), what);
          }
        }
      }
    }
  }
  // Half and bfloat16 accumulate in float32: compared with the float32 result on the same rounded
  // values, rounded once.
  const std::pair<at::ScalarType, double> low[] = {{at::kHalf, 2e-3}, {at::kBFloat16, 1.6e-2}};
  for (const auto& [dt, tol] : low) {
    const Tensor x = at::randn({2, 8, 9, 7}).to(dt), w = at::randn({8, 1, 3, 3}).to(dt), b = at::randn({8}).to(dt);
    for (int64_t stride : {1, 2}) {
      for (Form f : {Form::NCHW, Form::ChannelsLast}) {
        const Tensor want = at::relu(ref_dw(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat), stride)).to(dt);
        const Tensor out = sk::dwconv3x3(in_form(x.to(dev), f), w.to(dev), b.to(dev), stride, true);
        SK_CHECK(out.scalar_type() == dt, "dwconv3x3 keeps the dtype");
        EXPECT_CLOSE(out, want, tol, tol,
                     std::string("dwconv3x3 ") + c10::toString(dt) + " stride=" + std::to_string(stride) + " " +
                         form_name(f) + on(dev));
      }
    }
  }
}

// Parameters of a folded unit, scaled so activations stay of order one through three convolutions.
sk::SplitParams make_split_params(int64_t cb) {
  const double s = 1.0 / std::sqrt(static_cast<double>(cb));
  return {at::randn({cb, cb, 1, 1}) * s, at::randn({cb}), at::randn({cb, 1, 3, 3}) / 3.0, at::randn({cb}),
          at::randn({cb, cb, 1, 1}) * s, at::randn({cb})};
}

sk::DownParams make_down_params(int64_t c_in, int64_t cb) {
  const double si = 1.0 / std::sqrt(static_cast<double>(c_in)), sb = 1.0 / std::sqrt(static_cast<double>(cb));
  return {at::randn({c_in, 1, 3, 3}) / 3.0, at::randn({c_in}), at::randn({cb, c_in, 1, 1}) * si, at::randn({cb}),
          at::randn({cb, c_in, 1, 1}) * si, at::randn({cb}),   at::randn({cb, 1, 3, 3}) / 3.0,   at::randn({cb}),
          at::randn({cb, cb, 1, 1}) * sb,   at::randn({cb})};
}

void test_split_unit(at::Device dev) {
  struct Case {
    int64_t N, cb, H, W;
  };
  const Case cases[] = {{2, 4, 7, 5}, {1, 5, 1, 1}, {2, 3, 2, 3}, {1, 24, 8, 8}, {0, 4, 3, 3}};
  for (const Case& c : cases) {
    const sk::SplitParams p = make_split_params(c.cb);
    const Tensor x0 = at::randn({c.N, 2 * c.cb, c.H, c.W});
    const Tensor want = ref_split_unit(x0, p);
    for (Form f : kForms) {
      const std::string what = "split_unit " + shape_str(x0.sizes()) + " " + form_name(f) + on(dev);
      const Tensor x = in_form(x0.to(dev), f);
      const Tensor out = sk::split_unit(x, to_device(p, dev));
      EXPECT_CLOSE(out, want, 1e-4, 1e-4, what);
      SK_CHECK(keeps_format(out, x, f), what);
    }
  }
}

void test_down_unit(at::Device dev) {
  struct Case {
    int64_t N, c_in, cb, H, W;
  };
  // c_in != cb as in the first unit of each ShuffleNetV2 stage (24 -> 2 x 58 channels).
  const Case cases[] = {{2, 6, 4, 7, 9}, {1, 3, 5, 1, 1}, {2, 4, 4, 2, 3}, {1, 24, 29, 8, 8}, {0, 4, 4, 5, 5}};
  for (const Case& c : cases) {
    const sk::DownParams p = make_down_params(c.c_in, c.cb);
    const Tensor x0 = at::randn({c.N, c.c_in, c.H, c.W});
    const Tensor want = ref_down_unit(x0, p);
    for (Form f : kForms) {
      const std::string what =
          "down_unit " + shape_str(x0.sizes()) + " cb=" + std::to_string(c.cb) + " " + form_name(f) + on(dev);
      const Tensor x = in_form(x0.to(dev), f);
      const Tensor out = sk::down_unit(x, to_device(p, dev));
      EXPECT_CLOSE(out, want, 1e-4, 1e-4, what);
      SK_CHECK(keeps_format(out, x, f), what);
    }
  }
}

// Bad input raises c10::Error (a Python exception once it crosses into Python) whose message names
// the op and the argument; it never crashes or returns.
void expect_error(const std::function<void()>& call, const std::string& name, const std::string& fragment,
                  const std::string& what, const char* file, int line) {
  try {
    call();
    record(false, what + ": no error was raised", file, line);
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    const bool ok = msg.find(name) != std::string::npos && msg.find(fragment) != std::string::npos;
    // The first line is enough to tell which check fired (the dispatcher's messages go on for pages).
    record(ok, what + ": message '" + msg.substr(0, msg.find('\n')) + "' lacks '" + name + "' or '" + fragment + "'",
           file, line);
  }
}

#define EXPECT_ERROR_NAMED(call, name, fragment) \
  expect_error([&] { (void)(call); }, name, fragment, #call, __FILE__, __LINE__)
#define EXPECT_ERROR(call, op, fragment) EXPECT_ERROR_NAMED(call, "shufflekernels." op, fragment)

void test_bad_inputs() {
  const Tensor x = at::randn({2, 6, 5, 5});
  EXPECT_ERROR(sk::channel_shuffle(x, 4), "channel_shuffle", "groups");
  EXPECT_ERROR(sk::channel_shuffle(x, 0), "channel_shuffle", "groups");
  EXPECT_ERROR(sk::channel_shuffle(at::randn({6, 5, 5}), 2), "channel_shuffle", "4-D");
  EXPECT_ERROR(sk::channel_shuffle(at::ones({2, 6, 5, 5}, at::kInt), 2), "channel_shuffle", "dtype");

  // An empty list carries no tensor from which the dispatcher could pick a backend, so the kernel's own
  // check is never reached: the dispatcher raises, naming the op. (shufflekernels.ops checks first.)
  EXPECT_ERROR_NAMED(sk::shuffle_cat(std::vector<Tensor>{}), "shufflekernels::shuffle_cat", "no tensor arguments");
  EXPECT_ERROR(sk::shuffle_cat({x, at::randn({2, 6, 5, 4})}), "shuffle_cat", "shape");
  EXPECT_ERROR(sk::shuffle_cat({x, x.to(at::kHalf)}), "shuffle_cat", "dtype");

  const Tensor w = at::randn({6, 1, 3, 3}), b = at::randn({6});
  EXPECT_ERROR(sk::dwconv3x3(x, w, b, 3, false), "dwconv3x3", "stride");
  EXPECT_ERROR(sk::dwconv3x3(x, at::randn({6, 1, 5, 5}), b, 1, false), "dwconv3x3", "weight");
  EXPECT_ERROR(sk::dwconv3x3(x, w, at::randn({5}), 1, false), "dwconv3x3", "bias");
  EXPECT_ERROR(sk::dwconv3x3(x, w.to(at::kHalf), b, 1, false), "dwconv3x3", "weight");
  EXPECT_ERROR(sk::dwconv3x3(at::ones({2, 6, 5, 5}, at::kLong), w, b, 1, false), "dwconv3x3", "dtype");

  const sk::SplitParams sp = make_split_params(3);
  EXPECT_ERROR(sk::split_unit(at::randn({1, 7, 4, 4}), sp), "split_unit", "even");
  EXPECT_ERROR(sk::split_unit(at::randn({1, 8, 4, 4}), sp), "split_unit", "pw1_weight");

  sk::DownParams dp = make_down_params(6, 4);
  dp.pw3_w = at::randn({4, 5, 1, 1});
  EXPECT_ERROR(sk::down_unit(x, dp), "down_unit", "pw3_weight");
  EXPECT_ERROR(sk::down_unit(at::randn({2, 6, 5}), make_down_params(6, 4)), "down_unit", "4-D");
}

}  // namespace

int main() {
  at::manual_seed(0);
  std::printf("shufflekernels C++ tests: torch %s, %s build, CUDA kernels %s\n", SK_TORCH_VERSION, SK_BUILD_TYPE,
              SK_WITH_CUDA ? SK_CUDA_ARCHS : "not built");
  run("index_math", test_index_math);
  run("registration", test_registration);
  run("bad_inputs", test_bad_inputs);
  std::vector<at::Device> devices{at::kCPU};
  if (SK_WITH_CUDA && at::hasCUDA()) {
    devices.emplace_back(at::kCUDA);
  } else {
    std::printf("skip CUDA op tests: %s\n", SK_WITH_CUDA ? "no CUDA device" : "CUDA kernels not built");
  }
  for (const at::Device dev : devices) {
    const std::string d = dev.str() + " ";
    run((d + "channel_shuffle").c_str(), [dev] { test_channel_shuffle(dev); });
    run((d + "shuffle_cat").c_str(), [dev] { test_shuffle_cat(dev); });
    run((d + "dwconv3x3").c_str(), [dev] { test_dwconv3x3(dev); });
    run((d + "split_unit").c_str(), [dev] { test_split_unit(dev); });
    run((d + "down_unit").c_str(), [dev] { test_down_unit(dev); });
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
