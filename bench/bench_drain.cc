// Drain cost of the session store (issue 11 item 7): N sessions, each a cursor of the unit-test geometry
// with `len` KV entries per layer, none on disk yet; times SessionStore::SaveAll with a given batch size
// (files per syncfs). batch 1 is one sync per file, the cost before batching.
//   bench_drain DIR N LEN BATCH [WRITE_THROUGH]   -> one JSON line
// WRITE_THROUGH=1 writes each session at creation (timed separately) and then drains.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/session/session_codec.h"
#include "core/session/session_store.h"

using namespace titand;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: bench_drain DIR N LEN BATCH [WRITE_THROUGH]\n";
    return 2;
  }
  const std::string dir = argv[1];
  const int n = std::atoi(argv[2]);
  const int64_t len = std::atoll(argv[3]);
  SnapshotBinding b;
  b.model_id = "bench";
  b.num_layers = 2;
  b.num_kv_heads = 2;
  b.head_dim = 64;
  b.dtype = "float32";
  std::filesystem::remove_all(dir);
  SessionStoreOptions o;
  o.dir = dir;
  o.device_budget = int64_t{1} << 40;
  o.host_budget = int64_t{1} << 40;
  o.max_sessions = n + 1;
  o.drain_batch_files = std::atoll(argv[4]);
  o.write_through = argc > 5 && std::atoi(argv[5]) != 0;
  o.codec = MakeSnapshotCodec(b, at::kCPU);
  o.fresh = [&] {
    SessionCursor c;
    c.state.layers.resize(2);
    for (auto& l : c.state.layers) {
      l.k = at::zeros({2, len, 64});
      l.v = at::zeros({2, len, 64});
      l.len = len;
    }
    c.state.num_tokens = len;
    return c;
  };
  auto store = SessionStore::Open(o);
  if (!store.ok()) return 1;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    if (!(*store)->Create("").ok()) return 1;
  }
  auto t1 = std::chrono::steady_clock::now();
  DrainResult r = (*store)->SaveAll();
  auto t2 = std::chrono::steady_clock::now();
  const auto st = (*store)->Stats();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::cout << "{\"sessions\": " << n << ", \"snapshot_bytes\": " << std::filesystem::file_size(
                   std::filesystem::directory_iterator(dir)->path())
            << ", \"batch\": " << o.drain_batch_files << ", \"write_through\": " << o.write_through
            << ", \"create_s\": " << secs(t0, t1) << ", \"drain_s\": " << secs(t1, t2)
            << ", \"written\": " << r.written << ", \"failed\": " << r.failed << ", \"syncs\": " << st.drain_syncs
            << "}\n";
  std::filesystem::remove_all(dir);
  return r.failed == 0 ? 0 : 1;
}
