// Per-sequence decode state kept batch-resident between steps (issue 9: no per-step copy of window caches
// or linear memories in continuous batching).
//
// Each sequence owns its tensors (LayerState k, v, memory), but a batched decode step wants them as one
// [N, ...] tensor. BatchRows finds that tensor when the parts already are rows of one block of memory
// (the previous step's batch, or the model's decode slots, core/model/decode_slots.h) and otherwise stacks
// them once and re-binds every part to its row, so the next step over the same sequences copies nothing.
// A sequence that leaves the batch keeps a view into the shared block (pinning it) until it is compacted
// (SequenceState::Compact), which the engine does when a request ends.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace titand {

struct BatchBlock {
  at::Tensor block;           // [N, *part sizes]; block[rows[b]] aliases part b
  std::vector<int64_t> rows;  // distinct, one per part
  bool identity = false;      // rows == 0 .. B-1 and N == B: the block is the batch itself
  at::Tensor rows_tensor(const at::Device& device) const;  // rows as int64 [B] on `device`
};

// parts: B >= 1 defined tensors of identical sizes, dtype and device.
// When the parts are distinct rows of one contiguous block (in any order) that block (rows up to the
// highest one used) is returned with their row numbers, nothing copied; else a stacked copy (identity
// rows), and each *parts[b] is re-bound to its row (same values, now shared storage).
// Throws c10::Error when the parts differ in shape, dtype or device.
BatchBlock BatchRows(const std::vector<at::Tensor*>& parts);

// Always stacks (identity rows) and re-binds each *parts[b] to its row.
BatchBlock StackRows(const std::vector<at::Tensor*>& parts);

// True when `t` is a view into a larger allocation (for example a row of a BatchRows block).
bool SharesLargerStorage(const at::Tensor& t);

}  // namespace titand
