#include "core/model/decode_slots.h"

#include <c10/util/Exception.h>

namespace titand {

DecodeSlots::DecodeSlots(int64_t slots, std::vector<LayerSpec> layers, int64_t num_kv_heads, int64_t num_heads,
                         int64_t head_dim, at::ScalarType dtype, at::Device device)
    : slots_(slots), free_(std::make_shared<FreeList>()) {
  TORCH_CHECK(slots >= 1, "DecodeSlots: slots must be >= 1, got ", slots);
  free_->used.assign(static_cast<size_t>(slots), false);
  const auto kv = at::TensorOptions().dtype(dtype).device(device);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  for (const LayerSpec& l : layers) {
    Blocks b;
    b.cache_slots = l.cache_slots;
    b.k = at::zeros({slots, num_kv_heads, l.cache_slots, head_dim}, kv);
    b.v = at::zeros({slots, num_kv_heads, l.cache_slots, head_dim}, kv);
    if (l.memory) b.memory = at::zeros({slots, num_heads, head_dim, head_dim}, f32);
    blocks_.emplace_back(l.layer, std::move(b));
  }
}

const DecodeSlots::Blocks* DecodeSlots::Find(int64_t layer) const {
  for (const auto& [li, b] : blocks_) {
    if (li == layer) return &b;
  }
  return nullptr;
}

bool DecodeSlots::Covers(int64_t layer) const { return Find(layer) != nullptr; }

bool DecodeSlots::Acquire(SequenceState& st) {
  int64_t index = -1;
  {
    std::lock_guard<std::mutex> lock(free_->mu);
    for (size_t i = 0; i < free_->used.size(); ++i) {
      if (!free_->used[i]) {  // the lowest free row: rows in use stay packed at the front
        free_->used[i] = true;
        index = static_cast<int64_t>(i);
        break;
      }
    }
  }
  if (index < 0) return false;
  auto lease = std::make_shared<DecodeSlotLease>();
  lease->index = index;
  // The free list identifies the owner: a lease keeps it alive, so a later DecodeSlots (a model re-shaped
  // by SetHybrid) can never share its address and mistake an old lease for one of its own.
  lease->owner = free_.get();
  lease->release = [free = free_](int64_t i) {  // the free list outlives this object if a lease does
    std::lock_guard<std::mutex> lock(free->mu);
    free->used[static_cast<size_t>(i)] = false;
  };
  st.slot = std::move(lease);
  return true;
}

void DecodeSlots::Bind(SequenceState& st, int64_t layer) {
  const Blocks* b = Find(layer);
  TORCH_CHECK(b != nullptr && Holds(st), "DecodeSlots::Bind: layer ", layer, " not covered or no slot held");
  const int64_t r = st.slot->index;
  LayerState& ls = st.layers[static_cast<size_t>(layer)];
  at::Tensor rk = b->k.select(0, r), rv = b->v.select(0, r);
  if (!ls.k.defined() || ls.k.data_ptr() != rk.data_ptr()) {
    if (ls.k.defined()) {
      if (ls.in_order()) {
        TORCH_CHECK(ls.len < b->cache_slots, "DecodeSlots: layer ", layer, " holds ", ls.len,
                    " entries, a slot ", b->cache_slots);
        rk.narrow(1, 0, ls.len).copy_(ls.k.narrow(1, 0, ls.len));
        rv.narrow(1, 0, ls.len).copy_(ls.v.narrow(1, 0, ls.len));
      } else {
        TORCH_CHECK(ls.k.size(1) == b->cache_slots, "DecodeSlots: layer ", layer, "'s ring has ", ls.k.size(1),
                    " slots, a slot ", b->cache_slots);
        rk.copy_(ls.k);
        rv.copy_(ls.v);
      }
    } else {
      TORCH_CHECK(ls.len == 0, "DecodeSlots: layer ", layer, " has entries but no cache");
    }
    ls.k = rk;
    ls.v = rv;
  }
  if (b->memory.defined()) {
    at::Tensor rm = b->memory.select(0, r);
    if (!ls.memory.defined()) {
      rm.zero_();
      ls.memory = rm;
    } else if (ls.memory.data_ptr() != rm.data_ptr()) {
      rm.copy_(ls.memory);
      ls.memory = rm;
    }
  }
}

int64_t DecodeSlots::InUse() const {
  std::lock_guard<std::mutex> lock(free_->mu);
  int64_t n = 0;
  for (bool u : free_->used) n += u ? 1 : 0;
  return n;
}

}  // namespace titand
