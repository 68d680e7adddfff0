// Weight-only quantised linear layers: y = x W^T + b with W [out, in] stored as
//   dense  float32 / bfloat16 / float16 (at::linear, computed in the weight's dtype);
//   int8   per-output-channel symmetric: W[n, k] = scale[n] * q[n, k], q in [-127, 127], scale bf16
//          (at::_weight_int8pack_mm; from 128 input rows on, W is dequantised to float32 for that call and
//          multiplied by at::linear with float32 activations: faster for prefill on CPU);
//   int4   group-wise asymmetric, groups of 32 along `in`: W[n, k] = scale[n, g] * (q[n, k] - 8) + zero[n, g]
//          with g = k / 32, q in 0..15, scale and zero bf16 (at::_weight_int4pack_mm_for_cpu on weights packed by
//          at::_convert_weight_to_int4pack_for_cpu, which takes q as int32 [out, in] and wants out % 16 == 0:
//          other `out` sizes are padded with zero rows and the padding sliced off the result).
// int4 has no such long-input path (the packed layout is opaque): its prefill costs ~2x float32's CPU time.
// The int8/int4 kernels are fast on CPU only with bfloat16 activations (the float32/float16 paths of
// LibTorch's CPU kernels are 10-100x slower), so Forward converts x to bfloat16 for them and the result
// back to x's dtype; the kernels accumulate in float32. int8/int4 are CPU-only here: on CUDA LibTorch packs
// int4 differently and neither path has been tested, so Make* return INVALID_ARGUMENT for a CUDA device.
// The ops exist from torch 2.6 (int4 `_for_cpu` variants); older LibTorch gets INVALID_ARGUMENT for int4.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace titand {

// What `--weights` asks for. kDtype (the default: dense in the model dtype, as before quantised weights
// existed) and kAuto are resolved per tensor (core/model/weight_loader.h); a LinearWeight is always one of
// the concrete formats (kF16 only arises from --dtype float16 with dense weights).
enum class WeightFormat { kDtype, kAuto, kF32, kBF16, kF16, kInt8, kInt4 };

// "dtype" | "auto" | "f32" | "bf16" | "int8" | "int4" (flag spelling); INVALID_ARGUMENT otherwise.
absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& name);
const char* WeightFormatName(WeightFormat f);  // the flag spelling; "f16" for kF16

constexpr int64_t kInt4GroupSize = 32;

// An int4 weight before packing, in the kernel's own form: W[n, k] = scale[n, k/32] * (q[n, k] - 8)
// + zero[n, k/32]. q uint8 [out, in] (values 0..15), scale and zero float32 [out, in/32] (rounded to bf16
// when packed).
struct Int4Groups {
  at::Tensor q, scale, zero;
};
// Min/max group quantisation of a float weight [out, in] (in % 32 == 0): scale = (max - min) / 15 and
// zero = min + 8 * scale, both already rounded to bfloat16, q = clamp(round((W - zero) / scale) + 8, 0, 15).
Int4Groups QuantizeInt4(const at::Tensor& w);

class LinearWeight {
 public:
  LinearWeight() = default;
  // W float [out, in] stored as `dtype` (kFloat, kBFloat16 or kHalf); bias [out] (or undefined) likewise.
  static LinearWeight MakeDense(const at::Tensor& w, at::ScalarType dtype, const at::Tensor& bias, at::Device dev);
  // W float [out, in] quantised per row: scale = max|W[n, :]| / 127 (rounded to bf16; 1 for an all-zero row).
  static absl::StatusOr<LinearWeight> MakeInt8(const at::Tensor& w, const at::Tensor& bias, at::Device dev);
  // Packs int4 groups (in % 32 == 0, else INVALID_ARGUMENT). bias float [out] or undefined.
  static absl::StatusOr<LinearWeight> MakeInt4(const Int4Groups& g, const at::Tensor& bias, at::Device dev);

  // x [N, in] (float32/bfloat16/float16) -> [N, out] in x's dtype.
  at::Tensor Forward(const at::Tensor& x) const;
  // W as float32 [out, in] computed by the kernel itself (Forward of an identity matrix; tests).
  at::Tensor DequantizeWithKernel() const;

  bool defined() const { return w_.defined(); }
  WeightFormat format() const { return format_; }
  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  int64_t numel() const { return out_ * in_ + (bias_.defined() ? bias_.numel() : 0); }  // logical parameters
  int64_t bytes() const;  // storage actually held (packed weight, scales, bias)

 private:
  WeightFormat format_ = WeightFormat::kF32;
  int64_t out_ = 0, in_ = 0;
  at::Tensor w_;       // dense [out, in] | int8 [out, in] | int4 packed (opaque, padded out)
  at::Tensor scales_;  // int8: bf16 [out] | int4: bf16 [in/32, out_padded, 2] (scale, zero)
  at::Tensor bias_;    // [out] in the dense dtype, float32 for int8/int4; may be undefined
};

}  // namespace titand
