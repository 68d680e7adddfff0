// SessionWriter (core/engine/session_writer.h): jobs run off the caller's thread, concurrently up to the
// thread count, every queued job runs before Flush returns and before the writer is destroyed.
#include "core/engine/session_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace titand {
namespace {

TEST(SessionWriterTest, JobsRunOffTheCallersThreadAndFlushWaitsForThem) {
  SessionWriter w(1);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> ran{0};
  std::atomic<bool> elsewhere{true};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  w.Post([&, released] {
    released.wait();  // holds the only thread: the next jobs queue behind it
    elsewhere = elsewhere && std::this_thread::get_id() != caller;
    ++ran;
  });
  for (int i = 0; i < 5; ++i) w.Post([&] {
    elsewhere = elsewhere && std::this_thread::get_id() != caller;
    ++ran;
  });
  EXPECT_EQ(w.Pending(), 6);  // Post returned although no job could run yet
  EXPECT_EQ(ran.load(), 0);
  release.set_value();
  w.Flush();
  EXPECT_EQ(ran.load(), 6);
  EXPECT_EQ(w.Pending(), 0);
  EXPECT_TRUE(elsewhere.load());
}

// Two threads: two jobs that each wait for the other finish only if they run at the same time.
TEST(SessionWriterTest, ThreadsRunJobsConcurrently) {
  SessionWriter w(2);
  std::promise<void> a, b;
  std::shared_future<void> fa = a.get_future().share(), fb = b.get_future().share();
  std::atomic<int> met{0};
  w.Post([&, fb] {
    a.set_value();
    if (fb.wait_for(std::chrono::seconds(30)) == std::future_status::ready) ++met;
  });
  w.Post([&, fa] {
    b.set_value();
    if (fa.wait_for(std::chrono::seconds(30)) == std::future_status::ready) ++met;
  });
  w.Flush();
  EXPECT_EQ(met.load(), 2);
}

TEST(SessionWriterTest, DestructionRunsEveryQueuedJob) {
  std::atomic<int> ran{0};
  {
    SessionWriter w(1);
    w.Post([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the rest are still queued at ~
      ++ran;
    });
    for (int i = 0; i < 10; ++i) w.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 11);
}

}  // namespace
}  // namespace titand
