#include "core/model/linear_weight.h"

#include <torch/version.h>

#include "absl/strings/str_cat.h"
#include "core/common/status.h"

#define TITAND_TORCH_AT_LEAST(maj, min) \
  (TORCH_VERSION_MAJOR > (maj) || (TORCH_VERSION_MAJOR == (maj) && TORCH_VERSION_MINOR >= (min)))

namespace titand {
namespace {

constexpr int64_t kInt4RowMultiple = 16;  // _convert_weight_to_int4pack_for_cpu: out % 16 == 0
// From this many rows on, an int8 matmul dequantises W and runs the float GEMM instead: on the 2-core AVX2
// VM the weight-only kernel costs ~2x the float GEMM's CPU time per row at M >= 32 (BENCHMARKS.md, issue 9),
// and dequantising (out x in multiply-adds) is cheap next to the GEMM only for long inputs (prefill).
constexpr int64_t kInt8DenseFromRows = 128;

absl::Status CpuOnly(at::Device dev, const char* what) {
  if (dev.is_cpu()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " weights run on CPU only (not implemented for ", dev.str(),
                                                 "); use --weights bf16 or f32 there"));
}

at::Tensor RoundToBf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); }

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
#if !TITAND_TORCH_AT_LEAST(2, 6)
  return absl::InvalidArgumentError("int4 weights need LibTorch >= 2.6 (_weight_int4pack_mm_for_cpu)");
#else
  const int64_t out = g.q.size(0), in = g.q.size(1);
  if (in % kInt4GroupSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("int4 weights need in_features divisible by ", kInt4GroupSize,
                                                   ", got [", out, ", ", in, "]; use --weights int8"));
  }
  const int64_t pad = (kInt4RowMultiple - out % kInt4RowMultiple) % kInt4RowMultiple;
  at::Tensor q = g.q.to(at::kInt), scale = g.scale.to(at::kFloat), zero = g.zero.to(at::kFloat);
  if (pad > 0) {  // zero rows: q = 8, scale 1, zero 0 -> W = 0; sliced off in Forward
    q = at::cat({q, at::full({pad, in}, 8, q.options())});
    scale = at::cat({scale, at::ones({pad, scale.size(1)}, scale.options())});
    zero = at::cat({zero, at::zeros({pad, zero.size(1)}, zero.options())});
  }
  LinearWeight l;
  l.format_ = WeightFormat::kInt4;
  l.out_ = out;
  l.in_ = in;
  l.w_ = at::_convert_weight_to_int4pack_for_cpu(q.contiguous(), /*innerKTiles=*/1);
  l.scales_ = at::stack({scale.t(), zero.t()}, -1).to(at::kBFloat16).contiguous();  // [in/32, out_padded, 2]
  if (bias.defined()) l.bias_ = bias.to(at::kFloat);
  return l;
#endif
}

at::Tensor LinearWeight::Forward(const at::Tensor& x) const {
  at::Tensor y;
  switch (format_) {
    case WeightFormat::kInt8:
      if (x.size(0) >= kInt8DenseFromRows) {
        at::Tensor w = w_.to(at::kFloat) * scales_.to(at::kFloat).unsqueeze(1);
        y = at::linear(x.to(at::kFloat), w);
      } else {
        y = at::_weight_int8pack_mm(x.to(at::kBFloat16).contiguous(), w_, scales_);
      }
      break;
    case WeightFormat::kInt4:
#if TITAND_TORCH_AT_LEAST(2, 6)
      y = at::_weight_int4pack_mm_for_cpu(x.to(at::kBFloat16).contiguous(), w_, kInt4GroupSize, scales_);
      if (y.size(1) != out_) y = y.narrow(1, 0, out_);
#endif
      break;
    default:
      if (x.scalar_type() == w_.scalar_type()) return at::linear(x, w_, bias_);
      return at::linear(x.to(w_.scalar_type()), w_, bias_).to(x.scalar_type());
  }
  y = y.to(x.scalar_type());
  return bias_.defined() ? y + bias_.to(y.scalar_type()) : y;
}

at::Tensor LinearWeight::DequantizeWithKernel() const {
  at::ScalarType dt = format_ == WeightFormat::kInt8 || format_ == WeightFormat::kInt4 ? at::kBFloat16
                                                                                      : w_.scalar_type();
  at::Tensor eye = at::eye(in_, at::TensorOptions().dtype(dt).device(w_.device()));
  LinearWeight no_bias = *this;
  no_bias.bias_ = at::Tensor();
  return no_bias.Forward(eye).t().to(at::kFloat).contiguous();
}

int64_t LinearWeight::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&w_, &scales_, &bias_}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n;
}

}  // namespace titand
