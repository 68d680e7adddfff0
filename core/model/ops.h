// Small tensor ops of the decoder: RMS norm, RoPE, causal/windowed GQA attention (exact reference and SDPA).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/ATen.h>

namespace titand {

// y = w * (x / sqrt(mean(x^2, -1) + eps)), statistics in fp32, result in x's dtype (as Hugging Face does).
// x [..., D], w [D]. float32 on the CPU runs one row kernel (mean of squares accumulated in double; a row
// gives the same bits alone or in a batch); other dtypes/devices use LibTorch.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Parameter-free per-row RMS normalisation over the last dim: x / sqrt(mean(x^2) + eps), fp32 math
// (the same row kernel for float32 on the CPU).
at::Tensor RmsNormNoWeight(const at::Tensor& x, double eps);

// Rotary embedding, rotate-half convention. inv_freq [D/2] fp32; positions [N] int64.
// Returns cos, sin of shape [N, 1, D] in `dtype`.
std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& inv_freq, const at::Tensor& positions,
                                            at::ScalarType dtype);
at::Tensor RopeInvFreq(int64_t head_dim, double theta);
// x [N, heads, D] -> x*cos + rotate_half(x)*sin.
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// Causal (optionally windowed) grouped-query attention for one sequence.
//   q [T, H, D] at positions q_pos0 .. q_pos0+T-1;  k, v [Hkv, L, D] at positions k_pos0 .. k_pos0+L-1.
//   Query i sees key j iff pos_j <= pos_i and (no window or pos_j > pos_i - window).
// Returns [T, H*D] in q's dtype.
//   kReference: explicit scores, mask and softmax in fp32 (the exact path tests compare against);
//   kSdpa:      at::scaled_dot_product_attention (fused kernels: flash/memory-efficient on CUDA, flash on
//               CPU) with a boolean mask only when some key is hidden from some query; GQA by enable_gqa.
enum class AttentionImpl { kReference, kSdpa };
at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t q_pos0,
                           int64_t k_pos0, std::optional<int64_t> window, double scale,
                           AttentionImpl impl = AttentionImpl::kReference);

}  // namespace titand
