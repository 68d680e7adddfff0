// titand: the inference server binary. The only place that reads flags. Loads the model (LibTorch:
// this translation unit includes no protobuf-generated header), starts the gRPC server and the metrics
// endpoint, and drains on SIGTERM/SIGINT.
//
// Flags use dashes (--max-queue) or underscores (--max_queue). Sizes accept K/M/G/KiB/MiB/GiB suffixes.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "core/common/flag_names.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/engine/engine.h"
#include "core/runtime/device.h"
#include "core/runtime/runtime.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/stats_poller.h"
#include "server/titand_server.h"

ABSL_FLAG(std::string, model, "smollm2-135m", "model: .gguf file, Hugging Face folder or bundled alias");
ABSL_FLAG(std::string, tptt, "", "TPTT adapter folder (empty = plain model)");
ABSL_FLAG(std::string, host, "127.0.0.1", "listen address of the gRPC and metrics servers");
ABSL_FLAG(int, port, 50051, "gRPC port (0 = any free port)");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus metrics port (0 = no metrics endpoint)");
ABSL_FLAG(std::string, session_dir, "", "session snapshot folder (disk tier, drain, restart); empty = none");
ABSL_FLAG(int64_t, max_queue, 256, "waiting requests before RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_running, 16, "sequences in one batch");
ABSL_FLAG(int64_t, max_step_tokens, 512, "token budget of one engine step");
ABSL_FLAG(std::string, device_state_budget, "512MiB", "resident session state before eviction to host");
ABSL_FLAG(std::string, host_state_budget, "2GiB", "host session state before eviction to disk");
ABSL_FLAG(double, session_ttl, 3600, "seconds an idle session lives");
ABSL_FLAG(bool, session_write_through, true,
          "write a session's snapshot at create/fork/turn end (a crash loses no acknowledged turn)");
ABSL_FLAG(int, threads, 0, "intra-op threads (0 = all cores)");
ABSL_FLAG(std::string, dtype, "auto", "weights/activations dtype: auto (bfloat16 on CUDA, float32 on CPU) | "
          "float32 | bfloat16 | float16; session memory is float32 always");
ABSL_FLAG(std::string, device, "auto", "auto (cuda:0 when LibTorch has CUDA and sees a GPU, else cpu) | cpu | cuda[:N]");
ABSL_FLAG(double, drain_grace, 30, "seconds running calls get to finish on shutdown");
ABSL_FLAG(int, stream_buffer, 256, "per-stream buffer (chunks); full -> stream cancelled as too slow");

namespace titand {
namespace {

void Log(const std::string& line) {
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "%s titand: %s\n", stamp, line.c_str());
  std::fflush(stderr);
}

// "512MiB" -> 536870912; plain digits are bytes.
bool ParseBytes(const std::string& text, int64_t* out) {
  size_t i = 0;
  while (i < text.size() && (isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  double value;
  if (i == 0 || !absl::SimpleAtod(text.substr(0, i), &value)) return false;
  std::string unit = text.substr(i);
  double scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "KiB") scale = 1024.0;
  else if (unit == "M" || unit == "MiB") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") scale = 1024.0 * 1024 * 1024;
  else return false;
  *out = static_cast<int64_t>(value * scale);
  return true;
}


absl::StatusOr<EngineConfig> EngineConfigFromFlags() {
  EngineConfig c;
  c.max_queue = absl::GetFlag(FLAGS_max_queue);
  c.max_running = absl::GetFlag(FLAGS_max_running);
  c.max_step_tokens = absl::GetFlag(FLAGS_max_step_tokens);
  c.session_dir = absl::GetFlag(FLAGS_session_dir);
  c.session_ttl_seconds = absl::GetFlag(FLAGS_session_ttl);
  c.session_write_through = absl::GetFlag(FLAGS_session_write_through);
  if (!ParseBytes(absl::GetFlag(FLAGS_device_state_budget), &c.device_state_budget)) {
    return absl::InvalidArgumentError("--device-state-budget: not a size");
  }
  if (!ParseBytes(absl::GetFlag(FLAGS_host_state_budget), &c.host_state_budget)) {
    return absl::InvalidArgumentError("--host-state-budget: not a size");
  }
  absl::Status st = c.Validate();
  if (!st.ok()) return st;
  return c;
}

ModelSummary Summarize(const Runtime& rt, const EngineConfig& c, const std::string& dtype) {
  ModelSummary s;
  s.model_id = rt.model_id;
  s.model_path = rt.model_path;
  s.format = rt.format;
  s.architecture = rt.config.arch;
  s.adapter_id = rt.adapter_id;
  s.dtype = DtypeName(rt.model->options().dtype);  // resolved ("auto" -> what was chosen)
  s.vocab_size = rt.config.vocab_size;
  s.num_layers = rt.config.num_layers;
  s.hidden_size = rt.config.hidden_size;
  s.eos_token_id = rt.tokenizer ? rt.tokenizer->eos_id() : -1;
  s.max_prompt_tokens = c.max_prompt_tokens;
  s.max_new_tokens = c.max_new_tokens;
  s.max_queue = c.max_queue;
  s.max_running = c.max_running;
  return s;
}

int Run(sigset_t signals) {
  absl::StatusOr<EngineConfig> config = EngineConfigFromFlags();
  if (!config.ok()) {
    Log(absl::StrCat("bad flags: ", config.status().ToString()));
    return 2;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  ServerMetrics metrics(*registry);
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (int mport = absl::GetFlag(FLAGS_metrics_port); mport > 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> m =
        MetricsHttpServer::Start(absl::GetFlag(FLAGS_host), mport, registry);
    if (!m.ok()) {
      Log(absl::StrCat("cannot serve metrics: ", m.status().ToString()));
      return 1;
    }
    metrics_http = std::move(*m);
    Log(absl::StrCat("metrics on http://", absl::GetFlag(FLAGS_host), ":", metrics_http->port(), "/metrics"));
  }
  ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.stream_buffer_chunks = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_stream_buffer)));
  absl::StatusOr<std::unique_ptr<TitandServer>> server = TitandServer::Start(options, &metrics);
  if (!server.ok()) {
    Log(absl::StrCat("cannot start: ", server.status().ToString()));
    return 1;
  }
  Log(absl::StrCat("listening on ", options.host, ":", (*server)->port(), " (health NOT_SERVING)"));

  LoadOptions load;
  load.model = absl::GetFlag(FLAGS_model);
  load.tptt_dir = absl::GetFlag(FLAGS_tptt);
  load.dtype = absl::GetFlag(FLAGS_dtype);
  load.device = absl::GetFlag(FLAGS_device);
  load.threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<std::unique_ptr<Runtime>> rt = LoadRuntime(load);
  if (!rt.ok()) {
    Log(absl::StrCat("cannot load model: ", rt.status().ToString()));
    return 1;
  }
  Log(absl::StrCat("model loaded: ", (*rt)->model_path, " (", (*rt)->config.arch, ", ", (*rt)->config.num_layers,
                   " layers", (*rt)->adapter_id.empty() ? "" : ", adapter " + (*rt)->adapter_id, ")"));
  ModelSummary summary = Summarize(**rt, *config, load.dtype);
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*config, std::move(*rt));
  if (!engine.ok()) {
    Log(absl::StrCat("cannot start the engine: ", engine.status().ToString()));
    return 1;
  }
  if (absl::Status st = (*engine)->WarmUp(); !st.ok()) {
    Log(absl::StrCat("warm-up failed: ", st.ToString()));
    return 1;
  }
  Log("warm-up done");
  Engine* eng = engine->get();
  StatsPoller poller(std::chrono::milliseconds(500), [eng, &metrics] { metrics.UpdateStats(eng->Stats()); });
  (*server)->SetEngine(eng, summary);
  Log("health SERVING");

  int sig = 0;
  sigwait(&signals, &sig);
  Log(absl::StrCat("signal ", sig == SIGTERM ? "SIGTERM" : "SIGINT", ": health NOT_SERVING, draining"));
  (*server)->SetServing(false);
  const absl::Status drained = (*engine)->Shutdown(/*drain=*/true);
  Log(drained.ok() ? "engine drained, sessions snapshotted" : absl::StrCat("engine drained: ", drained.ToString()));
  auto grace = std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_drain_grace) * 1000));
  (*server)->Shutdown(grace);
  poller.Stop();
  Log(drained.ok() ? "stopped" : "stopped; sessions were lost (exit status 3)");
  return drained.ok() ? 0 : 3;
}

}  // namespace
}  // namespace titand

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts: every thread inherits the mask and the main
  // thread takes them with sigwait (no async-signal-safety concerns).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::SetProgramUsageMessage("titand --model smollm2-135m --port 50051 --metrics-port 9464");
  std::vector<std::string> args = titand::NormalizeFlagNames(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(cargs.size()), cargs.data());
  return titand::Run(signals);
}
