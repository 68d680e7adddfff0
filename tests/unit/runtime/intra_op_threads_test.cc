// UseIntraOpThreads (core/runtime/runtime.h): the thread given n intra-op threads runs LibTorch ops with an
// OpenMP pool of n; any other thread, started before or after, runs them serially and starts no pool of its
// own (a second pool is what made libgomp sleep between parallel regions). Threads are counted in
// /proc/self/task: a pool's workers are threads of the process.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dirent.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "core/runtime/runtime.h"

namespace titand {
namespace {

int ProcessThreads() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

// An op big enough for LibTorch to split across its pool (well above its 32,768-element grain).
void BigOp() {
  at::Tensor a = at::ones({1 << 22});
  EXPECT_EQ((a * 2).sum().item<double>(), 2.0 * (1 << 22));
}

TEST(IntraOpThreadsTest, OneThreadComputesWithAPoolAndOthersRunSerially) {
  absl::Notification pool_ready, done;
  int compute_threads = 0;
  std::thread compute([&] {
    UseIntraOpThreads(3);
    compute_threads = at::get_num_threads();
    BigOp();  // starts this thread's pool: 2 workers
    pool_ready.Notify();
    done.WaitForNotification();
  });
  pool_ready.WaitForNotification();
  EXPECT_EQ(compute_threads, 3);
  const int with_pool = ProcessThreads();
  int other_threads = 0, during = 0;
  std::thread other([&] {  // started after UseIntraOpThreads: LibTorch initialises it lazily
    BigOp();
    other_threads = at::get_num_threads();
    during = ProcessThreads();
  });
  other.join();
  EXPECT_EQ(other_threads, 1);
  EXPECT_EQ(during, with_pool + 1);  // itself, and no pool of its own
  done.Notify();
  compute.join();
}

TEST(IntraOpThreadsTest, LaterCallsMoveTheComputeThread) {
  // A second UseIntraOpThreads (another compute thread: a new engine) leaves the default at 1 again.
  std::thread([] { UseIntraOpThreads(2); }).join();
  std::thread([] { UseIntraOpThreads(4); EXPECT_EQ(at::get_num_threads(), 4); }).join();
  std::thread([] {
    BigOp();
    EXPECT_EQ(at::get_num_threads(), 1);
  }).join();
}

}  // namespace
}  // namespace titand
