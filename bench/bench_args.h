// Small helpers shared by the C++ benchmarks (bench_runtime, bench_generate, bench_sampler): flag lookup,
// wall and process-CPU timers. Header-only, no dependencies beyond the standard library.
#pragma once

#include <time.h>

#include <chrono>
#include <string>

namespace titand::bench {

using Clock = std::chrono::steady_clock;

// The value after `--name` on the command line, or `def` when the flag is absent.
inline std::string Arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return def;
}

// Wall seconds between two steady-clock points.
inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU seconds used by the whole process (every thread, spinning OpenMP workers included) so far. On a
// shared machine CPU time per token is a steadier cost measure than wall time.
inline double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

}  // namespace titand::bench
