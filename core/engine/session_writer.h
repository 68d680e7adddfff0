// SessionWriter: a few threads that end session turns off the engine thread. A job unpins a session
// whose turn changed its state (SessionStore::Unpin writes the snapshot through: serialise + write +
// fsync, tens of milliseconds to seconds for a state of megabytes) and then sends the turn's final
// chunk, so the engine thread goes on decoding the other sessions while the disk works, and a client
// still hears "done" only once its turn is durable (docs/operations.md "Session durability").
//
// Jobs of one session never overlap: the session stays pinned until its job has run. Jobs start in the
// order they were posted; with threads > 1 jobs of different sessions run concurrently.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace titand {

class SessionWriter {
 public:
  explicit SessionWriter(int threads);  // threads >= 1
  ~SessionWriter();                     // runs every queued job, then joins the threads
  SessionWriter(const SessionWriter&) = delete;
  SessionWriter& operator=(const SessionWriter&) = delete;

  void Post(std::function<void()> job);
  // Returns once no job is queued or running (drain: before the store saves the other sessions).
  void Flush();
  // Jobs queued or running (the titand_session_writes_pending gauge).
  int64_t Pending() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;    // a job was posted, or stop_
  std::condition_variable idle_;  // a job finished
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  int64_t running_ = 0;                     // guarded by mu_
  bool stop_ = false;                       // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace titand
