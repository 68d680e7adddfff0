// The fused CPU decode step of a windowed layer (issue 9): its softmax branch over the window and the
// attention sinks (REFERENCE.md s.1, core/model/sink_attention.h) and, for a TPTT layer, the linear memory
// and the Memory-as-Gate mix (REFERENCE.md s.1, core/model/hybrid_layer.h), for B sequences with one new
// token each, computed per (sequence, query head) in one pass with no intermediate tensors. It replaces
// ~150 LibTorch calls per layer and token (scores, masks, softmax, matmuls, feature maps, gates, the state
// update, RMS norm, lerp) by one parallel loop; the math, the cache layout (in order, then the ring) and
// the state update are those of WindowAttentionDecode + HybridLayer::MixDecode, which stay the path for
// other devices and dtypes and the reference the tests compare against.
//
// Per sequence b and query head h (kv head j = h / G, G = H / Hkv), the new key rope(k[j], t) written to its
// cache slot first:
//   softmax branch  s_i = scale * rope(q[h], t) . K[j, i] for the window slots, scale * rope(q[h], min(t, W + N_s - 1))
//                   . K[j, i] for the sink slots; o_s = sum_i softmax(s)_i V[j, i]      (fp32 throughout)
//   linear branch   qf = phi(q[h]), kf = phi(k[j]) (before RoPE); u = S^T kf, p = S^T qf;
//                   d = b (v[j] - a u) (delta forms) or v[j];  S <- a S + kf d^T;  o_l = a p + d (kf . qf);
//                   o_l <- o_l / sqrt(mean(o_l^2) + 1e-6)
//   mix             o = o_s + mu_h (o_l - o_s)   (= (1 - mu_h) o_s + mu_h o_l)
// Work is split over the B*H (sequence, head) pairs across the caller's intra-op threads (the file is
// built with OpenMP; core/runtime/runtime.h UseIntraOpThreads). Inner loops are plain C++ compiled twice,
// for AVX2 + FMA (chosen at run time) and for the baseline ISA; results agree to float rounding.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "core/model/hybrid_layer.h"
#include "core/model/sequence_state.h"
#include "core/model/sink_attention.h"

namespace titand {

// Whether FusedWindowDecodeCpu can run this step: CPU tensors, float32 activations (q [B, H, D]), every
// state's cache and memory float32 (or not allocated yet), even head dim, and (for a hybrid layer) mu float32
// [H] contiguous on the CPU and heads that match q.
bool FusedDecodeSupported(const std::vector<LayerState*>& states, const at::Tensor& q, const HybridLayer* hybrid);

// The decode step of B sequences through a windowed layer, fused (see above). RoPE is applied here too.
//   states[b], positions[b]  as WindowAttentionDecode: sequence b's layer state (cache advanced by one token
//                            in place, ring layout once full; memory S [H, D, D] fp32 created on first use
//                            and updated in place) and its new token's position;
//   x [B, hidden]            the layer input after its norm (for the learned gates; unused without hybrid);
//   q [B, H, D]              queries before RoPE (after any q norm);
//   k, v [B, Hkv, D]         the new keys before RoPE (after any k norm) and values;
//   cos, sin [B, 1, D]       RoPE at positions[b] (RopeCosSin's rows);
//   sw, inv_freq [D/2] fp32, scale as WindowAttentionDecode;  hybrid: the layer's TPTT branch, or nullptr
//   for a plain sliding-window layer (softmax branch only).
// All float32 on the CPU (FusedDecodeSupported); each [B, heads, D] input must have unit stride in D and
// heads D apart (rows may be strided: slices of the fused qkv projection are used as they are).
// Returns [B, H*D] float32. Throws c10::Error on a state that does not match its position (as
// WindowAttentionDecode, before anything is written) or on shapes that do not fit.
at::Tensor FusedWindowDecodeCpu(const std::vector<LayerState*>& states, const std::vector<int64_t>& positions,
                                const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& cos, const at::Tensor& sin, const SinkWindow& sw,
                                const at::Tensor& inv_freq, double scale, const HybridLayer* hybrid);

// Runs the baseline-ISA loops even where AVX2 + FMA exist (tests compare both); false restores detection.
void UsePortableFusedDecode(bool portable);

}  // namespace titand
