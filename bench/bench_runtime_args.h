// The model-loading part shared by the C++ benchmarks that run the bare runtime (bench_runtime,
// bench_generate): the common flags, the load with its error message, and the JSON header every report
// starts with. Header-only.
//   --model M (default smollm2-135m)  --tptt DIR  --dtype auto|float32|bfloat16|float16
//   --device auto|cpu|cuda[:N]  --weights auto|dtype|f32|bf16|int8|int4  --threads N (0 = the CPUs this process may use)
#pragma once

#include <ATen/Parallel.h>

#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "bench/bench_args.h"
#include "absl/strings/numbers.h"
#include "core/model/linear_weight.h"
#include "core/runtime/device.h"
#include "core/runtime/runtime.h"
#include "nlohmann/json.hpp"

namespace titand::bench {

// Reads the common flags into `lo`. Prints "<prog>: --flag: why" and returns false for a bad value.
inline bool ParseLoadArgs(const char* prog, int argc, char** argv, LoadOptions* lo) {
  lo->model = Arg(argc, argv, "model", "smollm2-135m");
  lo->tptt_dir = Arg(argc, argv, "tptt", "");
  lo->dtype = Arg(argc, argv, "dtype", "auto");
  lo->device = Arg(argc, argv, "device", "auto");
  lo->weights = Arg(argc, argv, "weights", kDefaultWeights);
  if (absl::Status w = ParseWeightFormat(lo->weights).status(); !w.ok()) {
    std::cerr << prog << ": --weights: " << w.message() << "\n";
    return false;
  }
  const std::string threads = Arg(argc, argv, "threads", "0");
  if (!absl::SimpleAtoi(threads, &lo->threads) || lo->threads < 0) {
    std::cerr << prog << ": --threads: expected a count >= 0, got '" << threads << "'\n";
    return false;
  }
  return true;
}

// Loads the runtime; on failure prints "<prog>: <error>" and returns null.
inline std::unique_ptr<Runtime> LoadOrReport(const char* prog, const LoadOptions& lo) {
  auto rt = LoadRuntime(lo);
  if (!rt.ok()) {
    std::cerr << prog << ": " << rt.status().message() << "\n";
    return nullptr;
  }
  return std::move(rt).value();
}

// What every report starts with: the model file, adapter, activation dtype, device, weight storage
// (format summary and bytes) and intra-op threads.
inline nlohmann::json RunHeader(const Runtime& rt, const LoadOptions& lo) {
  const CausalLM& m = *rt.model;
  return {{"model", rt.model_path},          {"tptt", lo.tptt_dir},
          {"dtype", DtypeName(m.options().dtype)}, {"device", m.options().device.str()},
          {"weights", m.WeightFormatSummary()},    {"weight_bytes", m.WeightBytes()},
          {"threads", at::get_num_threads()}};
}

}  // namespace titand::bench
