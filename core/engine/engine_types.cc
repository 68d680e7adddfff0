#include "core/engine/engine_types.h"

#include "absl/strings/str_cat.h"
#include "core/engine/engine.h"
#include "core/engine/scheduler.h"

namespace titand {

absl::Status EngineConfig::Validate() const {
  if (max_queue < 1) return absl::InvalidArgumentError("max_queue must be >= 1");
  SchedulerConfig s{max_running, max_step_tokens, prefill_chunk};
  if (absl::Status st = s.Validate(); !st.ok()) return st;
  if (max_prompt_tokens < 1) return absl::InvalidArgumentError("max_prompt_tokens must be >= 1");
  if (max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  if (device_state_budget < 0 || host_state_budget < 0)
    return absl::InvalidArgumentError("state budgets must be >= 0");
  if (!(session_ttl_seconds > 0)) return absl::InvalidArgumentError("session_ttl_seconds must be > 0");
  if (max_sessions < 1) return absl::InvalidArgumentError("max_sessions must be >= 1");
  if (session_write_threads < 1 || session_write_threads > 64)
    return absl::InvalidArgumentError("session_write_threads must be in [1, 64]");
  if (max_tenant_sessions < 0 || max_tenant_state_bytes < 0)
    return absl::InvalidArgumentError("tenant quotas must be >= 0 (0 = none)");
  if (!snapshot_key.empty() && snapshot_key.size() < 32)
    return absl::InvalidArgumentError("snapshot_key: at least 32 bytes");
  return absl::OkStatus();
}

}  // namespace titand
