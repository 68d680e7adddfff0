// titand: the inference server binary. The only place that reads flags. Loads the model (LibTorch:
// this translation unit includes no protobuf-generated header), starts the gRPC server and the metrics
// endpoint, and drains on SIGTERM/SIGINT.
//
// Flags use dashes (--max-queue) or underscores (--max_queue). Sizes accept K/M/G/KiB/MiB/GiB suffixes.
// Every numeric flag is range-checked before anything starts: out of range -> a message naming the
// flag and its range, exit status 2. SIGHUP reloads the --auth-token-file.

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "core/common/flag_names.h"
#include "core/common/log.h"
#include "core/common/status.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/engine/engine.h"
#include "core/runtime/cpu_budget.h"
#include "core/runtime/device.h"
#include "core/runtime/runtime.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/shared_store_metrics.h"
#include "server/stats_poller.h"
#include "server/titand_server.h"
#include "server/token_table.h"

ABSL_FLAG(std::string, model, "smollm2-135m", "model: .gguf file, Hugging Face folder or bundled alias");
ABSL_FLAG(std::string, tptt, "", "TPTT adapter folder (empty = plain model)");
ABSL_FLAG(std::string, host, "127.0.0.1", "listen address of the gRPC and metrics servers");
ABSL_FLAG(int, port, 50051, "gRPC port (0 = any free port)");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus metrics port (0 = no metrics endpoint)");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1",
          "listen address of the metrics endpoint (plain HTTP, no auth: keep it internal; 0.0.0.0 only where a "
          "network policy limits who reaches it)");
ABSL_FLAG(int, health_port, 0, "plaintext port serving only grpc.health.v1 (for probes when --tls-cert is set); 0 = none");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain: the gRPC port speaks TLS only (with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA bundle: require client certificates signed by it (mutual TLS)");
ABSL_FLAG(std::string, auth_token_file, "",
          "bearer tokens, one '<tenant> <token>' per line; empty = authentication OFF (dev mode)");
ABSL_FLAG(double, auth_reload_interval, 5, "seconds between checks of --auth-token-file for changes (0 = SIGHUP only)");
ABSL_FLAG(std::string, snapshot_key_file, "",
          "HMAC-SHA256 key of session snapshots (>= 32 bytes); empty = unsigned snapshots (SHA-256 only)");
ABSL_FLAG(int64_t, max_sessions_per_tenant, 1000, "sessions one tenant may hold (0 = no quota)");
ABSL_FLAG(std::string, max_state_per_tenant, "4GiB", "session state bytes one tenant may hold, every tier (0 = no quota)");
ABSL_FLAG(std::string, max_request_bytes, "4MiB", "largest request message accepted (gRPC max receive size)");
ABSL_FLAG(int64_t, max_id_length, 128, "longest request_id / session id in bytes (session ids: 128 at most)");
ABSL_FLAG(int64_t, max_stop_strings, 16, "stop strings per request");
ABSL_FLAG(int64_t, max_stop_string_bytes, 256, "bytes of one stop string");
ABSL_FLAG(int64_t, max_chat_messages, 256, "chat messages per request");
ABSL_FLAG(std::string, session_dir, "", "session snapshot folder (disk tier, drain, restart); empty = none");
ABSL_FLAG(int64_t, max_queue, 256, "waiting requests before RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_running, 16, "sequences in one batch");
ABSL_FLAG(int64_t, max_step_tokens, 512, "token budget of one engine step");
ABSL_FLAG(int64_t, prefill_chunk, 256,
          "largest prefill piece of one sequence per engine step (chunked prefill: smaller chunks keep the "
          "inter-token latency of decoding streams low while a long prompt is prefilled)");
ABSL_FLAG(std::string, device_state_budget, "512MiB", "resident session state before eviction to host");
ABSL_FLAG(std::string, host_state_budget, "2GiB", "host session state before eviction to disk");
ABSL_FLAG(double, session_ttl, 3600, "seconds an idle session lives");
ABSL_FLAG(bool, session_write_through, true,
          "write a session's snapshot at create/fork/turn end (a crash loses no acknowledged turn)");
ABSL_FLAG(int, session_write_threads, 2,
          "threads writing turn-end snapshots off the engine thread (1-64; the turn's final message waits "
          "for its write, other sessions keep decoding)");
ABSL_FLAG(int, threads, 0, "intra-op threads (0 = every CPU this process may use: its affinity mask and cgroup CPU "
          "quota, not the host's core count)");
ABSL_FLAG(std::string, dtype, "auto", "weights/activations dtype: auto (bfloat16 on CUDA, float32 on CPU) | "
          "float32 | bfloat16 | float16; session memory is float32 always");
ABSL_FLAG(std::string, weights, titand::kDefaultWeights,
          "linear/embedding weight storage: auto (CPU: a GGUF's Q4_x -> int4, Q8_0/Q5/Q6 -> int8, floats -> "
          "--dtype; CUDA: --dtype) | dtype (dense in --dtype: the file's weights exactly, as float) | f32 | bf16 | "
          "int8 (per-channel) | int4 (group 32); int8/int4 are CPU-only");
ABSL_FLAG(std::string, device, "auto", "auto (cuda:0 when LibTorch has CUDA and sees a GPU, else cpu) | cpu | cuda[:N]");
ABSL_FLAG(double, drain_grace, 30, "seconds running calls get to finish on shutdown");
ABSL_FLAG(std::string, shared_store, "",
          "shared session tier: redis://[user:password@]host:port[/db] (rediss:// = TLS); empty = none");
ABSL_FLAG(std::string, shared_store_password_file, "",
          "file holding the Redis password (else $TITAND_SHARED_STORE_PASSWORD, else the URL's)");
ABSL_FLAG(bool, shared_store_tls, false, "TLS to Redis (needs a build with libhiredis_ssl)");
ABSL_FLAG(std::string, shared_store_tls_ca, "", "CA bundle to verify Redis (empty = system default)");
ABSL_FLAG(std::string, shared_store_tls_cert, "", "client certificate for Redis (mutual TLS)");
ABSL_FLAG(std::string, shared_store_tls_key, "", "client key for Redis (mutual TLS)");
ABSL_FLAG(std::string, shared_store_tls_server_name, "", "name to verify in Redis's certificate (empty = host)");
ABSL_FLAG(double, shared_store_timeout, 2.0, "seconds per Redis command (connect: half of it, at most 1 s)");
ABSL_FLAG(int64_t, shared_lease_ms, 10000, "per-session lease in Redis, renewed every third of it during a turn");
ABSL_FLAG(double, shared_retry, 1.0, "seconds between retries of writes Redis did not take");
ABSL_FLAG(std::string, replica_id, "", "this replica's name in lease tokens (empty = hostname-pid)");
ABSL_FLAG(int, stream_buffer, 256, "per-stream buffer (chunks); full -> stream cancelled as too slow");

namespace titand {
namespace {

void Log(const std::string& line) { LogLine(line); }

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


absl::Status Range(const char* flag, double v, double lo, double hi) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", v, " outside [", lo, ", ", hi, "]"));
}

// Every numeric flag against its range (the engine/server Validate()s check consistency after this).
absl::Status CheckFlagRanges() {
  const int cores = AvailableCores();  // affinity and cgroup CPU quota (core/runtime/cpu_budget.h)
  for (absl::Status st : {
           Range("port", absl::GetFlag(FLAGS_port), 0, 65535),
           Range("metrics-port", absl::GetFlag(FLAGS_metrics_port), 0, 65535),
           Range("health-port", absl::GetFlag(FLAGS_health_port), 0, 65535),
           Range("max-queue", absl::GetFlag(FLAGS_max_queue), 1, 1000000),
           Range("max-running", absl::GetFlag(FLAGS_max_running), 1, 4096),
           Range("max-step-tokens", absl::GetFlag(FLAGS_max_step_tokens), 1, 1 << 20),
           Range("prefill-chunk", absl::GetFlag(FLAGS_prefill_chunk), 1, 1 << 20),
           Range("session-ttl", absl::GetFlag(FLAGS_session_ttl), 1, 365.0 * 86400),
           Range("threads", absl::GetFlag(FLAGS_threads), 0, cores),  // 0 = all usable; more never helps
           Range("drain-grace", absl::GetFlag(FLAGS_drain_grace), 0, 86400),
           Range("stream-buffer", absl::GetFlag(FLAGS_stream_buffer), 1, 1 << 16),
           Range("auth-reload-interval", absl::GetFlag(FLAGS_auth_reload_interval), 0, 86400),
           Range("max-sessions-per-tenant", absl::GetFlag(FLAGS_max_sessions_per_tenant), 0, 10000000),
           Range("max-id-length", absl::GetFlag(FLAGS_max_id_length), 8, 1024),
           Range("max-stop-strings", absl::GetFlag(FLAGS_max_stop_strings), 0, 1024),
           Range("max-stop-string-bytes", absl::GetFlag(FLAGS_max_stop_string_bytes), 1, 65536),
           Range("max-chat-messages", absl::GetFlag(FLAGS_max_chat_messages), 1, 65536),
       }) {
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// The raw bytes of a key file, without a trailing newline (files made by `openssl rand -hex 32 > f`).
absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("--snapshot-key-file ", path, ": cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string key = ss.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.size() < 32) return absl::InvalidArgumentError("--snapshot-key-file: the key must have at least 32 bytes");
  return key;
}

absl::Status SharedStoreFromFlags(EngineConfig* c) {
  const std::string url = absl::GetFlag(FLAGS_shared_store);
  if (url.empty()) return absl::OkStatus();
  absl::StatusOr<RedisOptions> r = ParseRedisUrl(url);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat("--shared-store: ", r.status().message()));
  if (const std::string f = absl::GetFlag(FLAGS_shared_store_password_file); !f.empty()) {
    std::ifstream in(f);
    if (!in || !std::getline(in, r->password))
      return absl::InvalidArgumentError(absl::StrCat("--shared-store-password-file: cannot read ", f));
  } else if (const char* env = std::getenv("TITAND_SHARED_STORE_PASSWORD"); env && *env) {
    r->password = env;
  }
  r->tls = r->tls || absl::GetFlag(FLAGS_shared_store_tls);
  r->tls_ca = absl::GetFlag(FLAGS_shared_store_tls_ca);
  r->tls_cert = absl::GetFlag(FLAGS_shared_store_tls_cert);
  r->tls_key = absl::GetFlag(FLAGS_shared_store_tls_key);
  r->tls_server_name = absl::GetFlag(FLAGS_shared_store_tls_server_name);
  r->io_timeout_s = absl::GetFlag(FLAGS_shared_store_timeout);
  if (!(r->io_timeout_s > 0)) return absl::InvalidArgumentError("--shared-store-timeout must be > 0");
  r->connect_timeout_s = std::min(1.0, r->io_timeout_s / 2);
  if (r->tls && !RedisTlsAvailable())
    return absl::InvalidArgumentError(
        "--shared-store: TLS requested but this build has no Redis TLS (hiredis 1.x with libhiredis_ssl is "
        "needed; Debian 12 ships hiredis 0.14 without it): use a plain connection on a private network");
  std::string replica = absl::GetFlag(FLAGS_replica_id);
  if (replica.empty()) {
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    replica = absl::StrCat(host, "-", ::getpid());
  }
  c->use_shared_store = true;
  c->shared_store.redis = *r;
  c->shared_store.replica_id = replica;
  c->shared_store.lease_ms = absl::GetFlag(FLAGS_shared_lease_ms);
  c->shared_retry_seconds = absl::GetFlag(FLAGS_shared_retry);
  if (c->shared_store.lease_ms < 100) return absl::InvalidArgumentError("--shared-lease-ms must be >= 100");
  if (!(c->shared_retry_seconds > 0)) return absl::InvalidArgumentError("--shared-retry must be > 0");
  return absl::OkStatus();
}

absl::StatusOr<EngineConfig> EngineConfigFromFlags() {
  RETURN_IF_ERROR(CheckFlagRanges());
  EngineConfig c;
  c.max_tenant_sessions = absl::GetFlag(FLAGS_max_sessions_per_tenant);
  if (!ParseBytes(absl::GetFlag(FLAGS_max_state_per_tenant), &c.max_tenant_state_bytes)) {
    return absl::InvalidArgumentError("--max-state-per-tenant: not a size");
  }
  if (const std::string path = absl::GetFlag(FLAGS_snapshot_key_file); !path.empty()) {
    ASSIGN_OR_RETURN(c.snapshot_key, ReadKeyFile(path));
  }
  c.max_queue = absl::GetFlag(FLAGS_max_queue);
  c.max_running = absl::GetFlag(FLAGS_max_running);
  c.max_step_tokens = absl::GetFlag(FLAGS_max_step_tokens);
  c.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  c.session_dir = absl::GetFlag(FLAGS_session_dir);
  c.session_ttl_seconds = absl::GetFlag(FLAGS_session_ttl);
  c.session_write_through = absl::GetFlag(FLAGS_session_write_through);
  c.session_write_threads = absl::GetFlag(FLAGS_session_write_threads);
  if (!ParseBytes(absl::GetFlag(FLAGS_device_state_budget), &c.device_state_budget)) {
    return absl::InvalidArgumentError("--device-state-budget: not a size");
  }
  if (!ParseBytes(absl::GetFlag(FLAGS_host_state_budget), &c.host_state_budget)) {
    return absl::InvalidArgumentError("--host-state-budget: not a size");
  }
  if (absl::Status st = SharedStoreFromFlags(&c); !st.ok()) return st;
  absl::Status st = c.Validate();
  if (!st.ok()) return st;
  return c;
}

ModelSummary Summarize(const Runtime& rt, const EngineConfig& c, const std::string& dtype) {
  ModelSummary s;
  s.model_id = rt.model_id;
  // The base name only: clients learn which weights, not where the server keeps them.
  std::filesystem::path p(rt.model_path);
  s.model_path = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  s.format = rt.format;
  s.architecture = rt.config.arch;
  s.adapter_id = rt.adapter_id;
  s.dtype = DtypeName(rt.model->options().dtype);  // resolved ("auto" -> what was chosen)
  s.weights = rt.model->WeightFormatSummary();
  s.weight_bytes = rt.model->WeightBytes();
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

// Authentication and transport settings, logged loudly when a protection is off.
absl::StatusOr<std::unique_ptr<TokenTable>> OpenTokens() {
  const std::string path = absl::GetFlag(FLAGS_auth_token_file);
  if (path.empty()) {
    Log("WARNING: authentication is OFF (no --auth-token-file): every client reaches every session. "
        "Dev mode only.");
    return std::unique_ptr<TokenTable>();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TokenTable> t, TokenTable::Open(path));
  Log(absl::StrCat("authentication on: ", t->size(), " tokens, ", t->tenants(), " tenants from ", path));
  return t;
}

absl::StatusOr<ServerOptions> ServerOptionsFromFlags(const TokenTable* tokens) {
  ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.health_port = absl::GetFlag(FLAGS_health_port);
  options.stream_buffer_chunks = static_cast<size_t>(absl::GetFlag(FLAGS_stream_buffer));
  if (!ParseBytes(absl::GetFlag(FLAGS_max_request_bytes), &options.max_receive_bytes))
    return absl::InvalidArgumentError("--max-request-bytes: not a size");
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.tokens = tokens;
  options.limits.max_id_length = absl::GetFlag(FLAGS_max_id_length);
  options.limits.max_stop_strings = absl::GetFlag(FLAGS_max_stop_strings);
  options.limits.max_stop_string_bytes = absl::GetFlag(FLAGS_max_stop_string_bytes);
  options.limits.max_chat_messages = absl::GetFlag(FLAGS_max_chat_messages);
  RETURN_IF_ERROR(options.Validate());
  return options;
}

int Run(sigset_t signals) {
  absl::StatusOr<EngineConfig> config = EngineConfigFromFlags();
  if (!config.ok()) {
    Log(absl::StrCat("bad flags: ", config.status().message()));
    return 2;
  }
  if (absl::Status st = ParseWeightFormat(absl::GetFlag(FLAGS_weights)).status(); !st.ok()) {
    Log(absl::StrCat("bad flags: --weights: ", st.message()));
    return 2;
  }
  // The name only (the device is resolved at load): a typo is a flag error before anything listens.
  if (absl::Status st = ParseDtype(absl::GetFlag(FLAGS_dtype), at::kCPU).status(); !st.ok()) {
    Log(absl::StrCat("bad flags: --dtype: ", st.message()));
    return 2;
  }
  if (config->snapshot_key.empty()) {
    Log("WARNING: session snapshots are not authenticated (no --snapshot-key-file): a file planted in the "
        "session dir would be restored as a session");
  }
  absl::StatusOr<std::unique_ptr<TokenTable>> tokens = OpenTokens();
  if (!tokens.ok()) {
    Log(absl::StrCat("bad flags: ", tokens.status().message()));
    return 2;
  }
  absl::StatusOr<ServerOptions> options = ServerOptionsFromFlags(tokens->get());
  if (!options.ok()) {
    Log(absl::StrCat("bad flags: ", options.status().message()));
    return 2;
  }
  if (options->tls_cert_file.empty() && options->host != "127.0.0.1" && options->host != "localhost") {
    Log("WARNING: gRPC is plaintext (no --tls-cert) on a non-loopback address");
  }
  auto registry = std::make_shared<prometheus::Registry>();
  ServerMetrics metrics(*registry);
  SharedStoreMetrics shared_metrics(*registry);
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (int mport = absl::GetFlag(FLAGS_metrics_port); mport > 0) {
    const std::string mhost = absl::GetFlag(FLAGS_metrics_host);
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> m = MetricsHttpServer::Start(mhost, mport, registry);
    if (!m.ok()) {
      Log(absl::StrCat("cannot serve metrics: ", m.status().ToString()));
      return 1;
    }
    metrics_http = std::move(*m);
    Log(absl::StrCat("metrics on http://", mhost, ":", metrics_http->port(), "/metrics"));
  }
  absl::StatusOr<std::unique_ptr<TitandServer>> server = TitandServer::Start(*options, &metrics);
  if (!server.ok()) {
    Log(absl::StrCat("cannot start: ", server.status().ToString()));
    return 1;
  }
  Log(absl::StrCat("listening on ", options->host, ":", (*server)->port(),
                   options->tls_cert_file.empty() ? " (plaintext" : options->tls_client_ca_file.empty() ? " (TLS" : " (mutual TLS",
                   (*server)->health_port() ? absl::StrCat(", health on :", (*server)->health_port()) : "",
                   "; health NOT_SERVING)"));
  TokenTable* table = tokens->get();
  std::unique_ptr<StatsPoller> token_poller;
  if (const double every = absl::GetFlag(FLAGS_auth_reload_interval); table && every > 0) {
    token_poller = std::make_unique<StatsPoller>(std::chrono::milliseconds(static_cast<int64_t>(every * 1000)), [table] {
      absl::Status st;
      if (table->ReloadIfChanged(&st)) {
        Log(st.ok() ? absl::StrCat("token file changed: reloaded (", table->size(), " tokens)")
                    : absl::StrCat("token file changed but NOT reloaded (old tokens stay): ", st.message()));
      }
    });
  }

  LoadOptions load;
  load.model = absl::GetFlag(FLAGS_model);
  load.tptt_dir = absl::GetFlag(FLAGS_tptt);
  load.dtype = absl::GetFlag(FLAGS_dtype);
  load.device = absl::GetFlag(FLAGS_device);
  load.weights = absl::GetFlag(FLAGS_weights);
  load.threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<std::unique_ptr<Runtime>> rt = LoadRuntime(load);
  if (!rt.ok()) {
    Log(absl::StrCat("cannot load model: ", rt.status().ToString()));
    return 1;
  }
  UseIntraOpThreads(1);  // the engine thread computes; this one only sets up (core/runtime/runtime.h)
  Log(absl::StrCat("model loaded: ", (*rt)->model_path, " (", (*rt)->config.arch, ", ", (*rt)->config.num_layers,
                   " layers, weights ", (*rt)->model->WeightFormatSummary(),
                   (*rt)->adapter_id.empty() ? "" : ", adapter " + (*rt)->adapter_id, ")"));
  Log(absl::StrCat("intra-op threads ", (*rt)->intra_op_threads, "; CPUs this process may use: ",
                   ProcessCpuBudget().ToString()));
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
  (*server)->SetEngine(eng, summary);
  // Health of the shared tier as its own service: the server stays SERVING on local state without it.
  std::atomic<bool> report_health{true};
  TitandServer* srv = server->get();
  StatsPoller poller(std::chrono::milliseconds(500), [eng, &metrics, &shared_metrics, &report_health, srv] {
    EngineStats s = eng->Stats();
    metrics.UpdateStats(s);
    shared_metrics.Update(s.shared);
    if (s.shared.enabled && report_health) srv->SetComponentServing("titand.v1.SharedStore", s.shared.up);
  });
  if (config->use_shared_store) {
    Log(absl::StrCat("shared session store ", config->shared_store.redis.host, ":", config->shared_store.redis.port,
                     " db ", config->shared_store.redis.db, " as replica ", config->shared_store.replica_id,
                     eng->Stats().shared.up ? "" : " (UNREACHABLE: running on local state, writes retried)"));
  }
  Log("health SERVING");

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    if (!table) {
      Log("SIGHUP: no --auth-token-file to reload");
      continue;
    }
    absl::Status st = table->Reload();
    Log(st.ok() ? absl::StrCat("SIGHUP: token file reloaded (", table->size(), " tokens)")
                : absl::StrCat("SIGHUP: token file NOT reloaded (old tokens stay): ", st.message()));
  }
  Log(absl::StrCat("signal ", sig == SIGTERM ? "SIGTERM" : "SIGINT", ": health NOT_SERVING, draining"));
  report_health = false;
  (*server)->SetServing(false);
  const absl::Status drained = (*engine)->Shutdown(/*drain=*/true);
  Log(drained.ok() ? "engine drained, sessions snapshotted" : absl::StrCat("engine drained: ", drained.ToString()));
  auto grace = std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_drain_grace) * 1000));
  poller.Stop();  // before the server goes: the poller sets the shared store's health
  (*server)->Shutdown(grace);
  if (token_poller) token_poller->Stop();
  Log(drained.ok() ? "stopped" : "stopped; sessions were lost (exit status 3)");
  return drained.ok() ? 0 : 3;
}

}  // namespace
}  // namespace titand

int main(int argc, char** argv) {
  // Block the shutdown signals (and SIGHUP: token reload) before any thread starts: every thread inherits the mask and the main
  // thread takes them with sigwait (no async-signal-safety concerns).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::SetProgramUsageMessage("titand --model smollm2-135m --port 50051 --metrics-port 9464");
  // --help lists titand's own flags (absl's default only matches files named after the program).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "server/main.cc"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> args = titand::NormalizeFlagNames(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(cargs.size()), cargs.data());
  return titand::Run(signals);
}
