// linattn_tool: runs the C++ linear-attention operators on inputs written by
// tests/py/test_linear_attention.py and writes the results for comparison with the Python spec.
//
// Usage: linattn_tool <manifest.json> <out_dir>
// Manifest: {"cases": [{"name", "op", "feature_map", "dtype" ("float32" | "bfloat16"),
//             "H", "T", "d", "dv", "chunk_sizes": [..],
//             "inputs": {"q", "k", "v", "beta", "alpha", ["state"]}}]}
// Inputs are raw little-endian float32 files next to the manifest: q, k [H, T, d] BEFORE phi,
// v [H, T, dv], beta, alpha [H, T], optional start state [H, d, dv].
// Outputs (float32, raw) in out_dir: <name>.phi_q.bin, <name>.phi_k.bin, <name>.rec.o.bin,
// <name>.rec.state.bin, <name>.chunk<C>.o.bin, <name>.chunk<C>.state.bin.
// Prints one line per case with the wall time of each run (ms, one thread).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/model/feature_map.h"
#include "core/model/linear_attention.h"

namespace titand {
namespace {

// Reads a raw float32 file that must hold exactly prod(shape) values.
absl::StatusOr<at::Tensor> ReadF32(const std::string& path, std::vector<int64_t> shape) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  const int64_t bytes = static_cast<int64_t>(in.tellg());
  at::Tensor t = at::empty(shape, at::kFloat);
  if (bytes != t.numel() * 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", bytes, " bytes, expected ", t.numel() * 4));
  }
  in.seekg(0);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), bytes);
  if (!in) return absl::DataLossError(absl::StrCat("short read on ", path));
  return t;
}

absl::Status WriteF32(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * 4);
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status RunCase(const nlohmann::json& cs, const std::string& in_dir,
                     const std::string& out_dir) {
  const std::string name = cs.at("name");
  ASSIGN_OR_RETURN(LinearOperator op, ParseLinearOperator(cs.at("op").get<std::string>()));
  ASSIGN_OR_RETURN(FeatureMap fm, ParseFeatureMap(cs.at("feature_map").get<std::string>()));
  const std::string dtype_name = cs.value("dtype", "float32");
  at::ScalarType dtype = at::kFloat;
  if (dtype_name == "bfloat16") {
    dtype = at::kBFloat16;
  } else if (dtype_name != "float32") {
    return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", dtype_name));
  }
  const int64_t h = cs.at("H"), t = cs.at("T"), d = cs.at("d"), dv = cs.at("dv");
  const auto& files = cs.at("inputs");
  auto path = [&](const char* key) { return in_dir + "/" + files.at(key).get<std::string>(); };
  ASSIGN_OR_RETURN(at::Tensor q_raw, ReadF32(path("q"), {h, t, d}));
  ASSIGN_OR_RETURN(at::Tensor k_raw, ReadF32(path("k"), {h, t, d}));
  ASSIGN_OR_RETURN(at::Tensor v, ReadF32(path("v"), {h, t, dv}));
  ASSIGN_OR_RETURN(at::Tensor beta, ReadF32(path("beta"), {h, t}));
  ASSIGN_OR_RETURN(at::Tensor alpha, ReadF32(path("alpha"), {h, t}));
  at::Tensor state0 = at::zeros({h, d, dv}, at::kFloat);
  if (files.contains("state")) {
    ASSIGN_OR_RETURN(state0, ReadF32(path("state"), {h, d, dv}));
  }
  const at::Tensor q = ApplyFeatureMap(fm, q_raw.to(dtype));
  const at::Tensor k = ApplyFeatureMap(fm, k_raw.to(dtype));
  v = v.to(dtype);
  beta = beta.to(dtype);
  alpha = alpha.to(dtype);
  const std::string base = out_dir + "/" + name;
  RETURN_IF_ERROR(WriteF32(base + ".phi_q.bin", q));
  RETURN_IF_ERROR(WriteF32(base + ".phi_k.bin", k));
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  at::Tensor s = state0.clone();
  auto t0 = Clock::now();
  at::Tensor o = LinearAttentionRecurrent(op, q, k, v, beta, alpha, s);
  std::cout << name << " rec_ms=" << ms_since(t0);
  RETURN_IF_ERROR(WriteF32(base + ".rec.o.bin", o));
  RETURN_IF_ERROR(WriteF32(base + ".rec.state.bin", s));
  for (int64_t c : cs.at("chunk_sizes").get<std::vector<int64_t>>()) {
    s = state0.clone();
    t0 = Clock::now();
    o = LinearAttentionChunked(op, q, k, v, beta, alpha, s, c);
    std::cout << " chunk" << c << "_ms=" << ms_since(t0);
    RETURN_IF_ERROR(WriteF32(absl::StrCat(base, ".chunk", c, ".o.bin"), o));
    RETURN_IF_ERROR(WriteF32(absl::StrCat(base, ".chunk", c, ".state.bin"), s));
  }
  std::cout << "\n";
  return absl::OkStatus();
}

absl::Status Run(const std::string& manifest_path, const std::string& out_dir) {
  std::ifstream in(manifest_path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", manifest_path));
  nlohmann::json manifest;
  try {
    in >> manifest;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad manifest: ", e.what()));
  }
  const auto slash = manifest_path.find_last_of('/');
  const std::string in_dir = slash == std::string::npos ? "." : manifest_path.substr(0, slash);
  for (const auto& cs : manifest.at("cases")) {
    try {
      RETURN_IF_ERROR(RunCase(cs, in_dir, out_dir));
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("torch error: ", e.what_without_backtrace()));
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("bad case: ", e.what()));
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace titand

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: linattn_tool <manifest.json> <out_dir>\n";
    return 2;
  }
  at::set_num_threads(1);  // timings printed per case are single-threaded
  absl::Status st = titand::Run(argv[1], argv[2]);
  if (!st.ok()) {
    std::cerr << "linattn_tool: " << st.ToString() << "\n";
    return 1;
  }
  return 0;
}
