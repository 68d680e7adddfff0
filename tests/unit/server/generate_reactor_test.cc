// The Generate reactor and the service over a real in-process gRPC server with a scripted fake engine
// (no model): ordering, final message, client cancellation reaching Engine::Cancel, a slow client
// cancelled as too slow, admission errors and deadlines mapped to gRPC codes, not-ready = UNAVAILABLE.
#include <atomic>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/synchronization/mutex.h"
#include "core/engine/engine.h"
#include "server/metrics.h"
#include "server/titand_server.h"
#include "titand/v1/inference.grpc.pb.h"

namespace titand {
namespace {

// Each request runs on its own thread: `n` one-token chunks `gap` apart, then a final chunk with
// `finish`. Cancel stops it with a final kCancelled. Enqueue fails with `reject` when set. With
// `run_until_cancel` the request, its chunks sent, keeps running (up to 10 s) until it is cancelled, as a
// long generation would.
class FakeEngine : public Engine {
 public:
  int n = 5;
  bool run_until_cancel = false;
  std::chrono::microseconds gap{0};
  EngineFinish finish = EngineFinish::kMaxTokens;
  absl::Status reject;
  std::atomic<int> cancels{0};

  ~FakeEngine() override {
    for (std::thread& t : threads_) t.join();
  }
  absl::StatusOr<RequestId> Enqueue(GenerateRequest req, ChunkCallback cb) override {
    if (!reject.ok()) return reject;
    RequestId id = ++next_;
    auto flag = std::make_shared<std::atomic<bool>>(false);
    {
      absl::MutexLock lock(&mu_);
      flags_[id] = flag;
    }
    threads_.emplace_back([this, cb, flag, n = n, gap = gap, finish = finish, hold = run_until_cancel] {
      auto cancelled = [&] {
        if (!flag->load()) return false;
        StreamChunk f;
        f.final = true;
        f.finish = EngineFinish::kCancelled;
        cb(f);
        return true;
      };
      for (int i = 0; i < n; ++i) {
        if (cancelled()) return;
        StreamChunk c;
        c.token_ids = {100 + i};
        c.text = std::string(1, static_cast<char>('a' + i % 26));
        cb(c);
        if (gap.count() > 0) std::this_thread::sleep_for(gap);
      }
      for (int t = 0; hold && t < 1000 && !flag->load(); ++t) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (cancelled()) return;
      StreamChunk f;
      f.final = true;
      f.finish = finish;
      f.usage = Usage{3, n, 0};
      cb(f);
    });
    return id;
  }
  void Cancel(RequestId id) override {
    ++cancels;
    absl::MutexLock lock(&mu_);
    if (flags_.count(id)) flags_[id]->store(true);
  }
  absl::Status Abort(const std::string&, const std::string&) override { return absl::NotFoundError("no such request"); }
  absl::StatusOr<SessionInfo> CreateSession(const std::string& id, const std::string&) override {
    return SessionInfo{id.empty() ? "generated" : id};
  }
  absl::StatusOr<SessionInfo> GetSession(const std::string& id, const std::string&) override {
    return absl::NotFoundError("session '" + id + "' not found");
  }
  absl::StatusOr<std::vector<SessionInfo>> ListSessions(const std::string&) override {
    return std::vector<SessionInfo>{};
  }
  absl::Status DeleteSession(const std::string&, const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<SessionInfo> ForkSession(const std::string&, const std::string&, const std::string&) override {
    return absl::FailedPreconditionError("busy");
  }
  absl::Status WarmUp() override { return absl::OkStatus(); }
  absl::Status Shutdown(bool) override { return absl::OkStatus(); }
  EngineStats Stats() const override { return {}; }
  const Runtime& runtime() const override { std::abort(); }

 private:
  std::atomic<RequestId> next_{0};
  absl::Mutex mu_;
  std::map<RequestId, std::shared_ptr<std::atomic<bool>>> flags_;
  std::vector<std::thread> threads_;
};

class ReactorTest : public ::testing::Test {
 protected:
  void StartServer(size_t buffer, bool with_engine = true) {
    ServerOptions o;
    o.port = 0;
    o.stream_buffer_chunks = buffer;
    auto s = TitandServer::Start(o, &metrics_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    if (with_engine) server_->SetEngine(&engine_, ModelSummary{});
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::milliseconds(100));
  }
  v1::GenerateRequest Request() {
    v1::GenerateRequest r;
    r.set_text("hello");
    return r;
  }

  prometheus::Registry registry_;
  ServerMetrics metrics_{registry_};
  FakeEngine engine_;
  std::unique_ptr<TitandServer> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(ReactorTest, StreamsInOrderThenFinal) {
  engine_.n = 40;
  StartServer(64);  // all 40 chunks may be pending at once
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request());
  v1::GenerateResponse msg;
  std::vector<int> ids;
  int finals = 0;
  while (reader->Read(&msg)) {
    for (int id : msg.token_ids()) ids.push_back(id);
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++finals;
      EXPECT_EQ(msg.finish_reason(), v1::FINISH_REASON_MAX_TOKENS);
      EXPECT_EQ(msg.usage().completion_tokens(), 40);
    }
  }
  grpc::Status st = reader->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(finals, 1);
  ASSERT_EQ(ids.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(ids[i], 100 + i);
  EXPECT_EQ(engine_.cancels.load(), 0);
}

TEST_F(ReactorTest, ClientCancelReachesEngine) {
  engine_.n = 100000;
  engine_.gap = std::chrono::microseconds(2000);
  StartServer(64);
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request());
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(reader->Read(&msg));
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 200 && engine_.cancels.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(engine_.cancels.load(), 1);
}

TEST_F(ReactorTest, SlowClientIsCancelledAsTooSlow) {
  engine_.n = 20000;  // all pushed at once: the 2-chunk buffer must overflow
  // The request then keeps running until cancelled: the server must cancel it. (Finishing right after
  // the 20,000 chunks let a loaded machine end the request before the overflow was handled, with
  // nothing left to cancel, and the test flaked.)
  engine_.run_until_cancel = true;
  StartServer(2);
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request());
  // A client that does not read for a while: the engine's 20,000 chunks outrun the transport's flow-control
  // window and the 2-chunk buffer whatever the scheduling (reading at once raced the engine under load).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  v1::GenerateResponse msg;
  int got = 0;
  while (reader->Read(&msg)) got += msg.token_ids_size();
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << got;
  EXPECT_NE(st.error_message().find("too slow"), std::string::npos);
  EXPECT_LT(got, 20000);
  for (int i = 0; i < 200 && engine_.cancels.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(engine_.cancels.load(), 1);
}

TEST_F(ReactorTest, AdmissionErrorsAndFinishesMapToCodes) {
  StartServer(8);
  engine_.reject = absl::ResourceExhaustedError("queue full (1 waiting)");
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, Request());
    v1::GenerateResponse msg;
    EXPECT_FALSE(reader->Read(&msg));
    grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(st.error_message(), "queue full (1 waiting)");
  }
  engine_.reject = absl::OkStatus();
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, v1::GenerateRequest());  // no input
    v1::GenerateResponse msg;
    EXPECT_FALSE(reader->Read(&msg));
    grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("input"), std::string::npos);
  }
  engine_.finish = EngineFinish::kDeadline;
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, Request());
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    grpc::ClientContext ctx;
    v1::GetSessionRequest req;
    req.set_session_id("nope");
    v1::Session s;
    grpc::Status st = stub_->GetSession(&ctx, req, &s);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(st.error_message().find("nope"), std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    v1::CreateSessionRequest req;
    req.set_session_id("mine");
    v1::Session s;
    ASSERT_TRUE(stub_->CreateSession(&ctx, req, &s).ok());
    EXPECT_EQ(s.id(), "mine");
  }
}

TEST_F(ReactorTest, NotReadyIsUnavailable) {
  StartServer(8, /*with_engine=*/false);
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, Request());
  v1::GenerateResponse msg;
  EXPECT_FALSE(reader->Read(&msg));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext ctx2;
  v1::ListSessionsResponse resp;
  EXPECT_EQ(stub_->ListSessions(&ctx2, v1::ListSessionsRequest(), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace titand
