// Binds the session store's codec to the snapshot format (core/session/snapshot.h): host-tier bytes and
// disk-tier files are both exactly SerializeCursor's output, checked against the running model's binding.
#pragma once

#include <ATen/ATen.h>

#include "core/session/session_store.h"
#include "core/session/snapshot_format.h"

namespace titand {

SessionCodec MakeSnapshotCodec(const SnapshotBinding& binding, at::Device device);

}  // namespace titand
