// --session FILE for titan-run: restore the conversation state if FILE exists, save it (atomically)
// after the command; `info` reports what such a state costs.
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "core/common/status.h"
#include "core/session/snapshot.h"

namespace titand::cli {

absl::StatusOr<SessionCursor> OpenCursor(const Runtime& rt, const std::string& path) {
  struct stat st;
  if (!path.empty() && ::stat(path.c_str(), &st) == 0) {
    return ReadSnapshotFile(path, BindingFor(rt), rt.model->options().device);
  }
  SessionCursor cur;
  cur.state = rt.model->NewState();
  return cur;
}

absl::Status SaveCursor(const Runtime& rt, const SessionCursor& cur, const std::string& path) {
  return WriteSnapshotFile(path, cur, BindingFor(rt));
}

void AddStateInfo(const Runtime& rt, nlohmann::json* j) {
  const CausalLM& m = *rt.model;
  std::optional<int64_t> limit;  // context after which the state stops growing (all layers windowed)
  bool all_windowed = true;
  int64_t w_max = 0, reach_max = 0;  // reach: window + sinks, the tokens after which a layer's cache is full
  for (int64_t i = 0; i < rt.config.num_layers; ++i) {
    auto w = m.LayerWindow(i);
    if (!w) {
      all_windowed = false;
    } else {
      w_max = std::max(w_max, *w);
      reach_max = std::max(reach_max, *w + m.LayerSinks(i));
    }
  }
  if (all_windowed) limit = reach_max;
  nlohmann::json s;
  s["bytes_per_token"] = m.StateBytesAt(2) - m.StateBytesAt(1);
  s["bytes_per_token_after_window"] = m.StateBytesAt(100001) - m.StateBytesAt(100000);
  s["bytes_at_1k_tokens"] = m.StateBytesAt(1024);
  s["bytes_at_32k_tokens"] = m.StateBytesAt(32768);
  if (limit) {
    s["window"] = w_max;
    s["bytes_at_window_limit"] = m.StateBytesAt(*limit);
    s["constant_after_tokens"] = *limit - 1;
  } else {
    s["window"] = nullptr;
  }
  if (!rt.adapter_id.empty()) {
    (*j)["tptt"] = {{"adapter_id", rt.adapter_id},
                    {"operator", ToString(rt.adapter->op)},
                    {"feature_map", ToString(rt.adapter->feature_map)},
                    {"layers", rt.adapter->layers.size()},
                    {"window", rt.adapter->window ? nlohmann::json(*rt.adapter->window) : nlohmann::json()},
                    {"sinks", rt.adapter->sinks}};
  }
  (*j)["model_id"] = rt.model_id;
  (*j)["session_state"] = s;
}

}  // namespace titand::cli
