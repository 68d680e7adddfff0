#include "core/model/sequence_state.h"

#include "core/model/batch_rows.h"

namespace titand {

std::pair<at::Tensor, at::Tensor> LayerState::OrderedKv() const {
  if (!k.defined()) return {k, v};
  if (in_order()) return {k.narrow(1, 0, len), v.narrow(1, 0, len)};
  const int64_t cap = k.size(1), ring = cap - ring_base;
  auto unroll = [&](const at::Tensor& t) {
    // sinks, then the window oldest first: slots after the stale one, then those before it.
    return at::cat({t.narrow(1, 0, ring_base), t.narrow(1, ring_base + ring_next + 1, ring - ring_next - 1),
                    t.narrow(1, ring_base, ring_next)},
                   1);
  };
  return {unroll(k), unroll(v)};
}

void LayerState::Normalize() {
  if (!k.defined() || in_order()) return;
  auto [ko, vo] = OrderedKv();  // fresh tensors (the ring is unrolled by a cat)
  k = std::move(ko);
  v = std::move(vo);
  ring_base = -1;
  ring_next = 0;
}

int64_t LayerState::ByteSize() const {
  int64_t bytes = 0;
  if (k.defined() && len > 0) bytes += 2 * k.size(0) * len * k.size(2) * k.element_size();
  if (memory.defined()) bytes += memory.numel() * memory.element_size();
  return bytes;
}

int64_t SequenceState::ByteSize() const {
  int64_t bytes = 0;
  for (const auto& l : layers) bytes += l.ByteSize();
  return bytes;
}

SequenceState SequenceState::Fork() const {
  SequenceState out;
  out.num_tokens = num_tokens;
  out.layers.reserve(layers.size());
  for (const auto& l : layers) {
    LayerState c;
    c.len = l.len;
    if (l.k.defined()) {
      auto [k, v] = l.OrderedKv();
      c.k = k.clone();
      c.v = v.clone();
    }
    if (l.memory.defined()) c.memory = l.memory.clone();
    out.layers.push_back(std::move(c));
  }
  return out;
}

void SequenceState::Compact() {
  for (auto& l : layers) {
    for (at::Tensor* t : {&l.k, &l.v, &l.memory}) {
      if (SharesLargerStorage(*t)) *t = t->clone();
    }
  }
  slot.reset();  // after the copies: the row may be handed out again at once
}

}  // namespace titand
