// bench_linear: microseconds per LinearWeight::Forward (core/model/linear_weight.h) for SmolLM2-135M's
// matmul shapes, per weight format and input row count, next to LibTorch's own weight-only kernels on the
// same shapes. Not a test: figures go to BENCHMARKS.md (issue 9), and it is how the row thresholds of
// core/model/linear_weight.cc were chosen.
//   bench_linear [--threads 2] [--rows 1,2,4,8,16,32,64,128] [--reps 20] [--formats f32,int8,int4,torch-int8,torch-int4]
//   (int8/int4 take the path LinearWeight::Forward picks for the row count; int8-kernel, int8-panel, int8-dense
//   and the int4-* forms force one)
// Weights are Gaussian (seeded); x is Gaussian [rows, in]. Prints one JSON object: per shape, format and
// row count the median microseconds of `reps` calls (after 3 warm-up calls) and the weight GB/s it implies.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/model/linear_weight.h"
#include "core/model/quant_matmul.h"
#include "nlohmann/json.hpp"

using namespace titand;
using namespace titand::bench;

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(t);
  return out;
}

struct Shape {
  const char* name;
  int64_t out, in;
};

template <typename F>
double MedianMicros(int reps, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = Clock::now();
    f();
    t.push_back(Seconds(a, Clock::now()) * 1e6);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(std::stoi(Arg(argc, argv, "threads", "2")));
  const int reps = std::max(1, std::stoi(Arg(argc, argv, "reps", "20")));
  std::vector<int64_t> rows;
  for (const std::string& r : Split(Arg(argc, argv, "rows", "1,2,4,8,16,32,64,128"))) rows.push_back(std::stoll(r));
  const std::vector<std::string> formats = Split(Arg(argc, argv, "formats", "f32,int8,int4,torch-int8,torch-int4"));
  const std::vector<Shape> shapes = {{"qkv", 960, 576}, {"o", 576, 576}, {"gate_up", 3072, 576},
                                     {"down", 576, 1536}, {"lm_head", 49152, 576}};
  at::manual_seed(1);
  nlohmann::json out = {{"threads", at::get_num_threads()}, {"avx2", QuantKernelsUseAvx2()}, {"results", {}}};
  for (const Shape& s : shapes) {
    at::Tensor w = at::randn({s.out, s.in}) * 0.05;
    LinearWeight f32 = LinearWeight::MakeDense(w, at::kFloat, at::Tensor(), at::kCPU);
    LinearWeight i8 = *LinearWeight::MakeInt8(w, at::Tensor(), at::kCPU);
    LinearWeight i4 = *LinearWeight::MakeInt4(QuantizeInt4(w), at::Tensor(), at::kCPU);
    // LibTorch's weight-only kernels on the same weights (what titand used before session 7).
    Int4Groups g = QuantizeInt4(w);
    at::Tensor t4 = at::_convert_weight_to_int4pack_for_cpu(g.q.to(at::kInt).contiguous(), 1);
    at::Tensor t4s = at::stack({g.scale.t(), g.zero.t()}, -1).to(at::kBFloat16).contiguous();
    at::Tensor t8s = (w.abs().amax(1) / 127.0).to(at::kBFloat16);
    at::Tensor t8 = at::round(w / t8s.to(at::kFloat).unsqueeze(1)).clamp(-127, 127).to(at::kChar).contiguous();
    for (int64_t m : rows) {
      at::Tensor x = at::randn({m, s.in});
      for (const std::string& f : formats) {
        double us = 0, bytes = 0;
        if (f == "f32") {
          us = MedianMicros(reps, [&] { f32.Forward(x); });
          bytes = f32.bytes();
        } else if (f.rfind("int8", 0) == 0 || f.rfind("int4", 0) == 0) {
          // "int8" / "int4": the path Forward picks for this many rows; "-kernel", "-panel", "-dense": forced.
          const std::string path = f.size() > 4 ? f.substr(5) : "";
          if (!path.empty() && path != "kernel" && path != "panel" && path != "dense") {
            std::cerr << "unknown format " << f << "\n";
            return 2;
          }
          ForceQuantizedPath(path == "kernel"  ? QuantizedPath::kRowKernel
                             : path == "panel" ? QuantizedPath::kPanel
                             : path == "dense" ? QuantizedPath::kDense
                                               : QuantizedPath::kAuto);
          const LinearWeight& l = f.rfind("int8", 0) == 0 ? i8 : i4;
          us = MedianMicros(reps, [&] { l.Forward(x); });
          bytes = l.bytes();
          ForceQuantizedPath(QuantizedPath::kAuto);
        } else if (f == "torch-int8") {
          us = MedianMicros(reps, [&] { at::_weight_int8pack_mm(x.to(at::kBFloat16), t8, t8s).to(at::kFloat); });
          bytes = t8.numel() + 2 * t8s.numel();
        } else if (f == "torch-int4") {
          us = MedianMicros(reps, [&] {
            at::_weight_int4pack_mm_for_cpu(x.to(at::kBFloat16), t4, 32, t4s).to(at::kFloat);
          });
          bytes = t4.numel() + 2 * t4s.numel();
        } else {
          std::cerr << "unknown format " << f << "\n";
          return 2;
        }
        out["results"].push_back({{"shape", s.name}, {"out", s.out}, {"in", s.in}, {"format", f}, {"rows", m},
                                  {"us", us}, {"weight_gb_per_s", bytes / us / 1e3}});
      }
    }
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
