#include "core/model/sequence_state.h"

namespace titand {

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
      c.k = l.k.narrow(1, 0, l.len).clone();
      c.v = l.v.narrow(1, 0, l.len).clone();
    }
    if (l.memory.defined()) c.memory = l.memory.clone();
    out.layers.push_back(std::move(c));
  }
  return out;
}

}  // namespace titand
