// ServerMetrics: the exposition text has every family with the expected values, and passes
// `promtool check metrics` when promtool is installed (Debian package prometheus).
#include "server/metrics.h"

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace titand {
namespace {

std::string Exposition(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

TEST(Metrics, FamiliesValuesAndPromtool) {
  prometheus::Registry registry;
  ServerMetrics m(registry);
  m.RecordTokens(1, -1);
  m.RecordTokens(2, 0.1);  // two tokens after 0.1 s: two gaps of 0.05 s
  StreamChunk f;
  f.final = true;
  f.finish = EngineFinish::kCancelled;
  f.usage = Usage{7, 3, 0};
  f.timing = Timing{0.01, 0.2, 0.4};
  m.RecordFinished(f, "CANCELLED");
  m.RecordRejected("RESOURCE_EXHAUSTED");
  EngineStats s;
  s.running = 2;
  s.waiting = 5;
  s.sessions_host = 4;
  s.host_state_bytes = 1 << 20;
  s.session_writes_pending = 3;
  m.UpdateStats(s);
  std::string text = Exposition(registry);
  for (const char* want : {
           "titand_generation_tokens_total 3",
           "titand_prompt_tokens_total 7",
           "titand_inter_token_latency_seconds_count 2",
           "titand_inter_token_latency_seconds_bucket{le=\"0.05\"} 2",
           "titand_time_to_first_token_seconds_count 1",
           "titand_request_latency_seconds_sum 0.4",
           "titand_queue_time_seconds_count 1",
           "titand_requests_total{code=\"CANCELLED\",finish_reason=\"cancelled\"} 1",
           "titand_requests_total{code=\"RESOURCE_EXHAUSTED\",finish_reason=\"rejected\"} 1",
           "titand_requests_running 2",
           "titand_requests_waiting 5",
           "titand_sessions{tier=\"host\"} 4",
           "titand_sessions{tier=\"disk\"} 0",
           "titand_session_state_bytes{tier=\"host\"} 1048576",
           "titand_session_writes_pending 3",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  if (std::ifstream("/usr/bin/promtool").good()) {
    std::string path = ::testing::TempDir() + "/titand_metrics.txt";
    std::ofstream(path) << text;
    std::string cmd = "/usr/bin/promtool check metrics < " + path + " > /dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << text;
  }
}

}  // namespace
}  // namespace titand
