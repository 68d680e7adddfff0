// The softmax branch of a converted layer with attention sinks (REFERENCE.md s.1, StreamingLLM's rule).
//
// A query at position t sees the window keys j in [t - W + 1, t] at their true RoPE distance t - j, plus the
// first N_s tokens ("sinks") once they have left the window. Once a gap opens (t - W + 1 > N_s) sink i is
// scored at distance W + N_s - 1 - i, as if it sat just before the window; while there is no gap every
// key keeps its true distance. In both cases sink i's distance is min(t, W + N_s - 1) - i, which is how it
// is computed here: the sink keys are held RoPE'd at their own positions i and the query is rotated for
// position min(t, W + N_s - 1) when scored against them (RoPE scores depend only on the position
// difference, so this equals rotating un-rotated sink keys for that distance).
//
// Cache layout of such a layer (LayerState k, v [n_kv, len, D]): the sinks that have left the window
// (n_s = min(N_s, max(0, num_tokens - (W - 1))) entries, positions 0 .. n_s - 1) followed by the last
// min(W - 1, num_tokens) tokens. len <= N_s + W - 1: the state stops growing. With N_s = 0 this is the
// plain window cache. Sink K/V are stored once, in that fixed-size prefix, and travel with the snapshot.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "core/model/ops.h"
#include "core/model/sequence_state.h"

namespace titand {

struct SinkWindow {
  int64_t window = 0;  // W >= 1: keys a query sees in its window, itself included
  int64_t sinks = 0;   // N_s >= 1 (0 only for WindowAttentionDecode: a plain window)
};

// Cached entries of a layer that has processed `tokens` tokens (sinks prefix + window).
int64_t SinkWindowCacheLen(const SinkWindow& sw, int64_t tokens);

// One sequence through the softmax branch of a converted layer with sinks; advances `st` (k, v, len).
//   q      [T, H, D] before RoPE (after q norm), for the sink scores;  q_rot [T, H, D] RoPE'd at pos0 + i
//   k_rot, v [Hkv, T, D] new keys (RoPE'd at their positions) and values;  pos0 = position of the first new
//   token (= tokens already in the state);  inv_freq [D/2] fp32 (RopeInvFreq).
// Returns [T, H*D] in q's dtype (softmax in fp32).
at::Tensor SinkWindowAttention(LayerState& st, const at::Tensor& q, const at::Tensor& q_rot, const at::Tensor& k_rot,
                               const at::Tensor& v, int64_t pos0, const SinkWindow& sw, const at::Tensor& inv_freq,
                               double scale);

// The decode step of B sequences (one new token each) through a windowed softmax layer, batched: one
// attention call for the whole batch instead of one per sequence. Works for plain sliding windows
// (sw.sinks = 0: the cache keeps the last W - 1 entries, as CausalLM's windowed layers do) and for windows
// with sinks (the layout above). Same math as SinkWindowAttention / CausalAttention with T = 1.
//   states[b]   the layer's state of sequence b, advanced by one token IN PLACE: the new key/value is
//               written into the cache (no copy of the cache per step); a full cache switches to the ring
//               layout of core/model/sequence_state.h and stays there; caches of one shape are kept as
//               rows of one block between steps (core/model/batch_rows.h), so a batch that decodes the
//               same sequences step after step copies no cache at all;
//   positions[b] = position of sequence b's new token (= tokens already in its state);
//   q [B, H, D] before RoPE (read only when sw.sinks > 0), q_rot [B, H, D] RoPE'd at positions[b];
//   k_rot, v [B, Hkv, D] the new keys (RoPE'd) and values;  inv_freq [D/2] fp32.
// Caches of sequences younger than the window are masked past their entries (and padded when their
// capacities differ). kSdpa runs the fused SDPA kernel where there are no sinks; sinks (two query
// rotations) and kReference use explicit fp32 scores. Returns [B, H*D] in q_rot's dtype. Throws
// c10::Error when a state does not hold the entries its position implies.
at::Tensor WindowAttentionDecode(const std::vector<LayerState*>& states, const std::vector<int64_t>& positions,
                                 const at::Tensor& q, const at::Tensor& q_rot, const at::Tensor& k_rot,
                                 const at::Tensor& v, const SinkWindow& sw, const at::Tensor& inv_freq, double scale,
                                 AttentionImpl impl);

// The two per-sequence halves of a decode step over such a cache, shared by WindowAttentionDecode and the
// fused CPU step (core/model/hybrid_decode_cpu.h).
struct DecodeEntry {
  int64_t slot;  // the cache slot the new key/value goes to
  int64_t seen;  // the new query sees slots [0, seen) once it is written (all of them in the ring layout)
};
// Before the step: checks that `st` holds the entries its `position` implies (c10::Error naming sequence
// `index` if not) and makes room for one more entry: an in-order cache without a free slot is reallocated
// ([kv_heads, capacity, head_dim] zeros, entries copied; whole N_s + W slots when that is <= 1024, else
// doubling); a ring has room by construction.
DecodeEntry PrepareDecodeEntry(LayerState& st, int64_t index, int64_t position, const SinkWindow& sw,
                               int64_t kv_heads, int64_t head_dim, const at::TensorOptions& k_options,
                               const at::TensorOptions& v_options);
// After the step (the new entry written at its slot): len grows by one; a cache that just became full
// switches to the ring layout; a ring moves its stale slot on.
void AdvanceDecodeEntry(LayerState& st, const SinkWindow& sw);

}  // namespace titand
