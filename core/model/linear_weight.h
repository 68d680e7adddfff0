// Weight-only quantised linear layers: y = x W^T + b with W [out, in] stored as
//   dense  float32 / bfloat16 / float16 (at::linear, computed in the weight's dtype);
//   int8   per-output-channel symmetric: W[n, k] = scale[n] * q[n, k], q in [-127, 127], scale bf16;
//   int4   group-wise asymmetric, groups of 32 along `in`: W[n, k] = scale[n, g] * (q[n, k] - 8) + zero[n, g]
//          with g = k / 32, q in 0..15, scale and zero bf16, two codes a byte (core/model/quant_matmul.h).
// How Forward multiplies int8/int4 (x float32/bfloat16/float16 [N, in], computed in float32, returned in x's
// dtype), by N (QuantizedPath; thresholds int4 / int8):
//   N <= 3 / 16        the row kernels (quant_matmul.h: activations as int16 per block of 32, exact integer
//                      dot products, float32 accumulation): decode steps of a few sequences;
//   N <= 32 / 128      the panel GEMM (quant_matmul.h: W dequantised a panel at a time into L2, float32 FMA):
//                      batched decode;
//   beyond             W dequantised to float32 for the call + at::linear (MKL): prefill chunks.
// The thresholds come from bench/bench_linear.cc (BENCHMARKS.md, issue 9, session 8).
// int8/int4 are CPU-only here: Make* return INVALID_ARGUMENT for a CUDA device.
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

// The int8/int4 CPU paths above. kAuto picks by rows; the others force one path for every call (tests and
// bench/bench_linear.cc; not thread-safe: set it while no Forward runs).
enum class QuantizedPath { kAuto, kRowKernel, kPanel, kDense };
void ForceQuantizedPath(QuantizedPath path);

// An int4 weight before packing: W[n, k] = scale[n, k/32] * (q[n, k] - 8) + zero[n, k/32]. q uint8
// [out, in] (values 0..15), scale and zero float32 [out, in/32] (rounded to bf16 when packed).
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
  at::Tensor w_;       // dense [out, in] | int8 [out, in] | int4 uint8 [out, in/2] (two codes a byte)
  at::Tensor scales_;  // int8: bf16 [out] | int4: bf16 [out, in/32, 2] (scale, zero)
  at::Tensor bias_;    // [out] in the dense dtype, float32 for int8/int4; may be undefined
};

}  // namespace titand
