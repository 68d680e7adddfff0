#include "core/session/session_types.h"

namespace titand {

const char* SharedWriteName(SharedWrite w) {
  switch (w) {
    case SharedWrite::kNone: return "none";
    case SharedWrite::kDurable: return "durable";
    case SharedWrite::kPending: return "pending";
    case SharedWrite::kRejected: return "rejected";
  }
  return "unknown";
}

const char* SessionTierName(SessionTier t) {
  switch (t) {
    case SessionTier::kDevice: return "device";
    case SessionTier::kHost: return "host";
    case SessionTier::kDisk: return "disk";
  }
  return "unknown";
}

}  // namespace titand
