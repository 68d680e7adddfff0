// TPTT linear-attention memory operators (REFERENCE.md section 1): the per-token recurrence (slow
// reference and decode path), the chunked WY form used for prefill, and the batched decode step.
//
// Per head, with phi already applied to q and k (rows q_t, k_t in R^d), v_t in R^dv, scalars
// b_t (write strength, `beta`) and a_t (decay, `alpha`), state S in R^(d x dv), S_0 = 0:
//   linear       S_t = S_{t-1} + k_t v_t^T
//   gated        S_t = a_t S_{t-1} + k_t v_t^T
//   delta        S_t = (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T
//   gated_delta  S_t = a_t (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T
//   o_t = S_t^T q_t
// All internal math is fp32; the state is always fp32.
//
// Errors (bad shapes, dtypes, chunk sizes) are raised as c10::Error by TORCH_CHECK, like every ATen
// call: the caller that runs torch code catches c10::Error and converts it to an absl::Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace titand {

enum class LinearOperator { kLinear, kGated, kDelta, kGatedDelta };

// Accepts "linear", "gated", "delta", "gated_delta".
absl::StatusOr<LinearOperator> ParseLinearOperator(std::string_view name);
std::string ToString(LinearOperator op);
// Whether the operator reads beta (delta forms) / alpha (gated forms).
bool UsesBeta(LinearOperator op);
bool UsesAlpha(LinearOperator op);

// One sequence, per-token loop.
//   q, k: [H, T, d] (feature-mapped)   v: [H, T, dv]
//   beta, alpha: [H, T] (may be undefined when the operator does not use them)
//   state: [H, d, dv] fp32, read as S_0 and overwritten with S_T in place.
// Returns o: [H, T, dv] in v's dtype.
at::Tensor LinearAttentionRecurrent(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, const at::Tensor& beta,
                                    const at::Tensor& alpha, at::Tensor& state);

// Same contract, chunked (WY) form for prefill. chunk_size >= 1; any T and chunk size give the
// recurrence's result up to fp32 rounding. Per chunk of C rows (Q, K, V, b, decays), start state S0,
// G_t = prod_{s<=t} a_s within the chunk (1 for ungated ops), Gamma[t,s] = G_t / G_s for s <= t:
//   delta forms:  A = strict_lower(diag(b) (K K^T * Gamma))
//                 U = (I + A)^-1 diag(b) V,  W = (I + A)^-1 diag(b) diag(G) K,  D = U - W S0
//   other forms:  D = V
//   O     = diag(G) Q S0 + (lower_incl_diag(Q K^T) * Gamma) D
//   S_end = G_C S0 + K^T diag(G_C / G) D
at::Tensor LinearAttentionChunked(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, const at::Tensor& beta,
                                  const at::Tensor& alpha, at::Tensor& state, int64_t chunk_size);

// The decode step of B sequences (one token each), each with its own state, updated in place. The states
// are stepped as rows of one block [B, H, d, dv] (core/model/batch_rows.h): the first step over a set of
// states stacks them once and re-binds each to its row; later steps over the same states in the same order
// copy nothing (S is by far the largest tensor of a TPTT layer). One batched matmul reads S, two in-place
// passes write it:
//   [u; p] = S_{t-1}^T [k_t; q_t]        (one read of the old state)
//   d_t = b_t (v_t - a_t u) (delta forms) or v_t;   S_t = a_t S_{t-1} + k_t d_t^T
//   o_t = S_t^T q_t = a_t p + d_t (k_t . q_t)
//   q, k: [B, H, d]   v: [B, H, dv]   beta, alpha: [B, H] (undefined when unused)
//   states[b]: [H, d, dv] fp32, read as S_{t-1} and overwritten with S_t (may be re-bound to a row view).
// Returns o: [B, H, dv] in v's dtype. Same result as LinearAttentionRecurrent per sequence with T = 1.
at::Tensor LinearAttentionDecodeStep(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& beta, const at::Tensor& alpha,
                                     const std::vector<at::Tensor*>& states);

}  // namespace titand
