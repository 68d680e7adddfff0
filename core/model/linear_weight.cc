#include "core/model/linear_weight.h"

#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/model/quant_matmul.h"

namespace titand {
namespace {

// Which quant_matmul.h kernel an input of N rows takes (bench/bench_linear.cc on the 2-core AVX2 VM,
// BENCHMARKS.md, issue 9, session 8): the row kernels (int16 activations, one read of a weight row per 4 input
// rows) while they win; the panel GEMM (float32 weights a panel at a time, kept in L2) for batched decode;
// "dequantise W to float32 for the call + at::linear" (MKL) beyond. int4 hands the row kernel over at 4 rows
// (qkv 4 rows: 70 us panel vs 96 kernel) and the panel at 64 (gate_up 64 rows: 1,900 us dense vs 2,262 panel);
// int8 keeps its row kernel to 16 rows and the panel to 128: the LM head (49,152 rows, int8 under `auto`)
// costs its float copy more than the panel saves (128 rows: 86 ms panel vs 178 ms dense).
struct QuantizedThresholds {
  int64_t kernel_max_rows, panel_max_rows;
};
constexpr QuantizedThresholds kInt4Paths{3, 32};
constexpr QuantizedThresholds kInt8Paths{16, 128};

QuantizedPath forced_path = QuantizedPath::kAuto;

QuantizedPath PathFor(int64_t rows, const QuantizedThresholds& t) {
  if (forced_path != QuantizedPath::kAuto) return forced_path;
  if (rows <= t.kernel_max_rows) return QuantizedPath::kRowKernel;
  return rows <= t.panel_max_rows ? QuantizedPath::kPanel : QuantizedPath::kDense;
}

absl::Status CpuOnly(at::Device dev, const char* what) {
  if (dev.is_cpu()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " weights run on CPU only (not implemented for ", dev.str(),
                                                 "); use --weights bf16 or f32 there"));
}

at::Tensor RoundToBf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); }

// bfloat16 tensor storage as the raw bits the kernels read.
const uint16_t* Bits(const at::Tensor& bf16) { return reinterpret_cast<const uint16_t*>(bf16.data_ptr()); }

}  // namespace

absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& name) {
  if (name == "dtype") return WeightFormat::kDtype;
  if (name == "auto") return WeightFormat::kAuto;
  if (name == "f32") return WeightFormat::kF32;
  if (name == "bf16") return WeightFormat::kBF16;
  if (name == "int8") return WeightFormat::kInt8;
  if (name == "int4") return WeightFormat::kInt4;
  return absl::InvalidArgumentError(absl::StrCat("unknown weights format '", name, "' (dtype|auto|f32|bf16|int8|int4)"));
}

const char* WeightFormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kDtype: return "dtype";
    case WeightFormat::kAuto: return "auto";
    case WeightFormat::kF32: return "f32";
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kF16: return "f16";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
  }
  return "unknown";
}

Int4Groups QuantizeInt4(const at::Tensor& w) {
  const int64_t out = w.size(0), in = w.size(1);
  at::Tensor g = w.to(at::kFloat).reshape({out, in / kInt4GroupSize, kInt4GroupSize});
  at::Tensor lo = std::get<0>(g.min(-1)), hi = std::get<0>(g.max(-1));
  at::Tensor scale = RoundToBf16((hi - lo) / 15.0);
  scale = at::where(scale > 0, scale, at::ones_like(scale));  // constant group: any scale, q = 8 gives zero
  at::Tensor zero = RoundToBf16(lo + 8.0 * scale);
  at::Tensor q = at::clamp(at::round((g - zero.unsqueeze(-1)) / scale.unsqueeze(-1)) + 8, 0, 15);
  return {q.reshape({out, in}).to(at::kByte), scale, zero};
}

LinearWeight LinearWeight::MakeDense(const at::Tensor& w, at::ScalarType dtype, const at::Tensor& bias,
                                     at::Device dev) {
  LinearWeight l;
  l.format_ = dtype == at::kBFloat16 ? WeightFormat::kBF16 : dtype == at::kHalf ? WeightFormat::kF16 : WeightFormat::kF32;
  l.out_ = w.size(0);
  l.in_ = w.size(1);
  auto opts = at::TensorOptions().dtype(dtype).device(dev);
  l.w_ = w.to(opts).contiguous();
  if (bias.defined()) l.bias_ = bias.to(opts);
  return l;
}

absl::StatusOr<LinearWeight> LinearWeight::MakeInt8(const at::Tensor& w, const at::Tensor& bias, at::Device dev) {
  RETURN_IF_ERROR(CpuOnly(dev, "int8"));
  LinearWeight l;
  l.format_ = WeightFormat::kInt8;
  l.out_ = w.size(0);
  l.in_ = w.size(1);
  at::Tensor wf = w.to(at::kFloat);
  at::Tensor scale = RoundToBf16(wf.abs().amax(1) / 127.0);
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  l.w_ = at::clamp(at::round(wf / scale.unsqueeze(1)), -127, 127).to(at::kChar).contiguous();
  l.scales_ = scale.to(at::kBFloat16);
  if (bias.defined()) l.bias_ = bias.to(at::kFloat);
  return l;
}

absl::StatusOr<LinearWeight> LinearWeight::MakeInt4(const Int4Groups& g, const at::Tensor& bias, at::Device dev) {
  RETURN_IF_ERROR(CpuOnly(dev, "int4"));
  const int64_t out = g.q.size(0), in = g.q.size(1);
  if (in % kInt4GroupSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("int4 weights need in_features divisible by ", kInt4GroupSize,
                                                   ", got [", out, ", ", in, "]; use --weights int8"));
  }
  const int64_t groups = in / kInt4GroupSize;
  // Two codes a byte: q[32g + j] low nibble, q[32g + 16 + j] high nibble (core/model/quant_matmul.h).
  at::Tensor q = g.q.to(at::kInt).reshape({out, groups, 2, 16});
  at::Tensor packed = q.select(2, 0) + q.select(2, 1) * 16;
  LinearWeight l;
  l.format_ = WeightFormat::kInt4;
  l.out_ = out;
  l.in_ = in;
  l.w_ = packed.reshape({out, in / 2}).to(at::kByte).contiguous();
  l.scales_ = at::stack({g.scale.to(at::kFloat), g.zero.to(at::kFloat)}, -1).to(at::kBFloat16).contiguous();
  if (bias.defined()) l.bias_ = bias.to(at::kFloat);
  return l;
}

at::Tensor LinearWeight::Forward(const at::Tensor& x) const {
  at::Tensor y;
  const int64_t rows = x.size(0);
  switch (format_) {
    case WeightFormat::kInt8: {
      const at::Tensor xf = x.to(at::kFloat).contiguous();
      const QuantizedPath path = PathFor(rows, kInt8Paths);
      if (path == QuantizedPath::kDense) {
        y = at::linear(xf, w_.to(at::kFloat) * scales_.to(at::kFloat).unsqueeze(1));
      } else {
        y = at::empty({rows, out_}, xf.options());
        (path == QuantizedPath::kRowKernel ? Int8MatmulCpu : Int8PanelMatmulCpu)(
            xf.data_ptr<float>(), rows, in_, w_.data_ptr<int8_t>(), Bits(scales_), out_, y.data_ptr<float>());
      }
      break;
    }
    case WeightFormat::kInt4: {
      const at::Tensor xf = x.to(at::kFloat).contiguous();
      const QuantizedPath path = PathFor(rows, kInt4Paths);
      if (path == QuantizedPath::kDense) {
        at::Tensor w = at::empty({out_, in_}, xf.options());
        Int4DequantizeCpu(w_.data_ptr<uint8_t>(), Bits(scales_), out_, in_, w.data_ptr<float>());
        y = at::linear(xf, w);
      } else {
        y = at::empty({rows, out_}, xf.options());
        (path == QuantizedPath::kRowKernel ? Int4MatmulCpu : Int4PanelMatmulCpu)(
            xf.data_ptr<float>(), rows, in_, w_.data_ptr<uint8_t>(), Bits(scales_), out_, y.data_ptr<float>());
      }
      break;
    }
    default:
      if (x.scalar_type() == w_.scalar_type()) return at::linear(x, w_, bias_);
      return at::linear(x.to(w_.scalar_type()), w_, bias_).to(x.scalar_type());
  }
  y = y.to(x.scalar_type());
  return bias_.defined() ? y + bias_.to(y.scalar_type()) : y;
}

at::Tensor LinearWeight::DequantizeWithKernel() const {
  at::ScalarType dt = format_ == WeightFormat::kInt8 || format_ == WeightFormat::kInt4 ? at::kFloat
                                                                                      : w_.scalar_type();
  at::Tensor eye = at::eye(in_, at::TensorOptions().dtype(dt).device(w_.device()));
  LinearWeight no_bias = *this;
  no_bias.bias_ = at::Tensor();
  return no_bias.Forward(eye).t().to(at::kFloat).contiguous();
}

void ForceQuantizedPath(QuantizedPath path) { forced_path = path; }

int64_t LinearWeight::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&w_, &scales_, &bias_}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n;
}

}  // namespace titand
