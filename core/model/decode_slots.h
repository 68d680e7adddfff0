// Decode slots (issue 9): the window caches and linear memories of the sequences being decoded, kept as
// rows of per-layer blocks that the model owns. Under continuous batching requests join and leave the
// decode batch every few steps; with per-sequence tensors each change of membership re-stacked the whole
// batch (core/model/batch_rows.h: ~0.1-0.2 s for 32 sessions of the bundled adapter on 2 cores). With
// slots a sequence's state sits in its own row from its first decode step until its request ends, the
// batched step reads the block in place whatever the membership and order (rows not in the step are
// computed as no-ops and dropped), and only a sequence that takes a slot is copied, once.
//
// A sequence holds its slot through SequenceState::slot (a lease): released when the state is compacted
// (SequenceState::Compact, done by the engine when a request ends) or destroyed. Layers covered: the
// windowed layers whose cache has at most kMaxSlotCacheEntries slots (N_s + W); others keep the
// per-sequence path. Memory: slots x (2 x n_kv x (N_s + W) x D x dtype bytes + H x D x D x 4) per covered
// layer, allocated once (for the bundled adapter 28.2 MB a slot).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <ATen/ATen.h>

#include "core/model/sequence_state.h"

namespace titand {

class DecodeSlots {
 public:
  static constexpr int64_t kMaxSlotCacheEntries = 1024;

  struct LayerSpec {
    int64_t layer = 0;        // model layer index
    int64_t cache_slots = 0;  // N_s + W: entries of the ring layout (core/model/sequence_state.h)
    bool memory = false;      // a TPTT layer: also its S [H, D, D] fp32
  };
  // slots >= 1 rows per block; k, v blocks [slots, num_kv_heads, cache_slots, head_dim] in `dtype`,
  // memory blocks [slots, num_heads, head_dim, head_dim] fp32, all zero, on `device`.
  DecodeSlots(int64_t slots, std::vector<LayerSpec> layers, int64_t num_kv_heads, int64_t num_heads,
              int64_t head_dim, at::ScalarType dtype, at::Device device);

  int64_t size() const { return slots_; }
  bool Covers(int64_t layer) const;
  // Gives `st` a free slot (a lease in st.slot). False when every slot is taken (st keeps no slot).
  bool Acquire(SequenceState& st);
  // True when `st` holds a slot of this object.
  bool Holds(const SequenceState& st) const { return st.slot && st.slot->owner == free_.get(); }
  // Makes layer `layer`'s k, v (and memory) of `st`, which Holds() a slot, the rows of that slot: copies
  // them in when they are elsewhere (first step after taking the slot, or after a prefill replaced them).
  // Throws c10::Error when the cache does not fit the row.
  void Bind(SequenceState& st, int64_t layer);
  // Slots in use (for tests and metrics).
  int64_t InUse() const;

 private:
  struct FreeList {
    std::mutex mu;
    std::vector<bool> used;
  };
  struct Blocks {
    int64_t cache_slots = 0;
    at::Tensor k, v, memory;
  };
  const Blocks* Find(int64_t layer) const;

  int64_t slots_;
  std::vector<std::pair<int64_t, Blocks>> blocks_;  // by layer
  std::shared_ptr<FreeList> free_;
};

}  // namespace titand
