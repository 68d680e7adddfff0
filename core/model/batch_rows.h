// Per-sequence decode state kept batch-resident between steps (issue 9: no per-step copy of window caches
// or linear memories in continuous batching).
//
// Each sequence owns its tensors (LayerState k, v, memory), but a batched decode step wants them as one
// [B, ...] tensor. BatchRows gives that tensor and, the first time, re-binds every sequence's tensor to a
// row of it, so the next step over the same sequences in the same order finds them already adjacent and
// copies nothing. A sequence that leaves the batch keeps a view into the shared tensor (pinning it) until
// it is compacted (SequenceState::Compact), which the engine does when a request ends.
#pragma once

#include <vector>

#include <ATen/ATen.h>

namespace titand {

// parts: B >= 1 defined tensors of identical sizes, dtype and device.
// Returns T [B, *sizes] with T[b] aliasing *parts[b]: when the parts already are rows 0 .. B-1 of one
// contiguous block of memory (the previous step's batch, or its first B rows) that block itself (no
// copy); else a stacked copy, and each *parts[b] is re-bound to T[b] (same values, now shared storage).
// Throws c10::Error when the parts differ in shape, dtype or device.
at::Tensor BatchRows(const std::vector<at::Tensor*>& parts);

// True when `t` is a view into a larger allocation (for example a row of a BatchRows tensor).
bool SharesLargerStorage(const at::Tensor& t);

}  // namespace titand
