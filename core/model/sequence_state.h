// The decode state of one sequence, owned by the caller (a session store) and passed into the model.
//   plain layer:     k, v = every key/value so far            [n_kv, len, D] (post-RoPE), capacity doubles
//   windowed layer:  k, v = the last W-1 keys/values          [n_kv, <=W-1, D] (the query's own key completes W)
//   TPTT layer:      windowed k, v  +  memory S               [H, D, D] fp32
//   TPTT layer with N_s attention sinks: k, v = the sinks that left the window (positions 0 .. n_s-1) then
//                    the last W-1 entries, len <= N_s + W - 1 (core/model/sink_attention.h); n_s follows from
//                    num_tokens, W and N_s, so snapshots carry sinks as ordinary KV entries.
// Positions are implicit: the cached entries are the `len` tokens right before `num_tokens` (after the sinks).
//
// Ring layout (windowed layers in steady-state decode, written by WindowAttentionDecode): once a windowed
// cache is full, the batched decode step stops shifting it and writes each new key/value in place over
// the entry that just left the window. Then k, v are [n_kv, N_s + W, D]: slots [0, ring_base) hold the
// sinks (ring_base = N_s), slots [ring_base, N_s + W) a ring of W window slots of which slot
// ring_base + ring_next is stale (it holds the entry that left the window; the next key goes there) and
// the other W - 1 are the window, oldest at ring_next + 1 (mod W). len = N_s + W - 1 valid entries.
// Everything that reads k/v in order (prefill, fork, snapshot) goes through OrderedKv() or Normalize();
// snapshots are always written in order, so the ring never reaches a file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/ATen.h>

namespace titand {

struct LayerState {
  at::Tensor k, v;    // [n_kv, capacity, D]; in order: entries [0, len) are valid (see the ring layout above)
  int64_t len = 0;
  int64_t ring_base = -1;  // -1: entries in order; >= 0: ring layout, slots before ring_base are sinks
  int64_t ring_next = 0;   // ring layout only: window slot (relative to ring_base) written next, stale now
  at::Tensor memory;  // TPTT linear-attention state S [H, D, Dv] fp32; undefined for softmax-only layers

  bool in_order() const { return ring_base < 0; }
  // The valid entries oldest first, [n_kv, len, D] each: views when in order, copies in the ring layout.
  std::pair<at::Tensor, at::Tensor> OrderedKv() const;
  // Ring layout -> in order (tensors of exactly `len` entries, own storage); no-op when already in order.
  void Normalize();
  // Bytes held by valid entries (what must be kept or moved), not allocator capacity.
  int64_t ByteSize() const;
};

// A row of the model's decode slots held by a sequence (core/model/decode_slots.h); given back when the
// lease is destroyed.
struct DecodeSlotLease {
  int64_t index = -1;
  const void* owner = nullptr;  // identifies the DecodeSlots it belongs to
  std::function<void(int64_t)> release;
  ~DecodeSlotLease() {
    if (release) release(index);
  }
};

struct SequenceState {
  std::vector<LayerState> layers;
  int64_t num_tokens = 0;  // tokens processed so far == position of the next token
  std::shared_ptr<DecodeSlotLease> slot;  // set while the sequence holds a decode slot

  int64_t ByteSize() const;
  // A deep copy (entries in order, own storage, no slot): the fork evolves independently of the original.
  SequenceState Fork() const;
  // Gives every tensor that is a row of a batch-resident block (core/model/batch_rows.h) or of a decode
  // slot its own storage, layout kept, and gives the slot back, so a sequence that left the batch pins
  // nothing. Called when a request ends.
  void Compact();
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
