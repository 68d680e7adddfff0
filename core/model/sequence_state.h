// The decode state of one sequence, owned by the caller (a session store) and passed into the model.
//   plain layer:     k, v = every key/value so far            [n_kv, len, D] (post-RoPE), capacity doubles
//   windowed layer:  k, v = the last W-1 keys/values          [n_kv, <=W-1, D] (the query's own key completes W)
//   TPTT layer:      windowed k, v  +  memory S               [H, D, D] fp32
//   TPTT layer with N_s attention sinks: k, v = the sinks that left the window (positions 0 .. n_s-1) then
//                    the last W-1 entries, len <= N_s + W - 1 (core/model/sink_attention.h); n_s follows from
//                    num_tokens, W and N_s, so snapshots carry sinks as ordinary KV entries.
// Positions are implicit: the cached entries are the `len` tokens right before `num_tokens` (after the sinks).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace titand {

struct LayerState {
  at::Tensor k, v;    // [n_kv, capacity, D]; entries [0, len) are valid
  int64_t len = 0;
  at::Tensor memory;  // TPTT linear-attention state S [H, D, Dv] fp32; undefined for softmax-only layers

  // Bytes held by valid entries (what must be kept or moved), not allocator capacity.
  int64_t ByteSize() const;
};

struct SequenceState {
  std::vector<LayerState> layers;
  int64_t num_tokens = 0;  // tokens processed so far == position of the next token

  int64_t ByteSize() const;
  // A deep copy: the fork evolves independently of the original.
  SequenceState Fork() const;
};

// A conversation's position: the state holds every token of the history except the LAST one, which
// waits in `pending` (fed first by the next call, so the logits predicting the next token exist and
// nothing is computed twice). Scoring A then B through one cursor == scoring A+B at once.
struct SessionCursor {
  SequenceState state;
  std::vector<int32_t> pending;  // at most one token

  int64_t history_tokens() const { return state.num_tokens + static_cast<int64_t>(pending.size()); }
  int64_t ByteSize() const { return state.ByteSize() + static_cast<int64_t>(pending.size() * sizeof(int32_t)); }
  SessionCursor Fork() const { return SessionCursor{state.Fork(), pending}; }
};

}  // namespace titand
