// Weight-only quantised linears (core/model/linear_weight.h, weight_loader.h) against independent
// references: Q4_0/Q4_1 blocks repacked to int4 reproduce ggml's float dequantisation (core/weights/dequant.cc)
// up to the bf16 rounding of scale and zero; int8/int4 Forward equals x W^T on the weights the documented
// formulas give, through the weight-only kernels and the long-input paths; shapes the kernels cannot take
// are rejected by name.
#include "core/model/linear_weight.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/model/weight_loader.h"
#include "core/weights/dequant.h"

namespace titand {
namespace {

at::Tensor Bf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); }

// Random Q4_1 (or Q4_0) blocks for a [rows, cols] matrix: fp16 d in [0.002, 0.05), m in [-0.4, 0).
std::vector<uint8_t> RandomQ4Blocks(GgmlType type, int64_t rows, int64_t cols, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t blocks = rows * cols / 32;
  const size_t bb = GgmlBlockBytes(type);
  at::Tensor d = (at::rand({blocks}) * 0.048 + 0.002).to(at::kHalf);
  at::Tensor m = (at::rand({blocks}) * -0.4).to(at::kHalf);
  at::Tensor qs = at::randint(0, 256, {blocks, 16}, at::kByte);
  std::vector<uint8_t> out(blocks * bb);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = out.data() + b * bb;
    std::memcpy(p, static_cast<const uint8_t*>(d.data_ptr()) + 2 * b, 2);
    if (type == GgmlType::kQ4_1) std::memcpy(p + 2, static_cast<const uint8_t*>(m.data_ptr()) + 2 * b, 2);
    std::memcpy(p + bb - 16, qs.data_ptr<uint8_t>() + 16 * b, 16);
  }
  return out;
}

// Repacks blocks to int4 and compares the kernel's own dequantisation (identity input) with ggml's float
// values: the only differences allowed are scale d and zero m + 8d rounded to bf16.
void CheckQ4Exact(GgmlType type, int64_t rows, int64_t cols) {
  std::vector<uint8_t> blocks = RandomQ4Blocks(type, rows, cols, 11);
  const int64_t n = rows * cols;
  at::Tensor ref = at::empty({rows, cols}, at::kFloat);
  ASSERT_TRUE(Dequantize(type, blocks.data(), blocks.size(), n, ref.data_ptr<float>()).ok());
  at::Tensor q = at::empty({rows, cols}, at::kByte);
  at::Tensor d = at::empty({rows, cols / 32}), m = at::empty({rows, cols / 32});
  ASSERT_TRUE(SplitQ4Blocks(type, blocks.data(), blocks.size(), n, q.data_ptr<uint8_t>(), d.data_ptr<float>(),
                            m.data_ptr<float>()).ok());
  at::Tensor zero = m + 8 * d;
  auto lw = LinearWeight::MakeInt4({q, d, zero}, at::Tensor(), at::kCPU);
  ASSERT_TRUE(lw.ok()) << lw.status();
  at::Tensor got = lw->DequantizeWithKernel();
  // The kernel form with the stored (bf16) scale and zero, in float32 (one rounding).
  auto rep = [&](const at::Tensor& t) { return t.repeat_interleave(32, 1); };
  at::Tensor qf = q.to(at::kFloat) - 8;
  at::Tensor expect = qf * rep(Bf16(d)) + rep(Bf16(zero));
  EXPECT_TRUE(at::allclose(got, expect, /*rtol=*/1e-6, /*atol=*/1e-7))
      << (got - expect).abs().max().item<float>();
  // Against ggml's float values: bounded by the bf16 rounding of d (times |q - 8|) and of the zero.
  at::Tensor bound = qf.abs() * rep((d - Bf16(d)).abs()) + rep((zero - Bf16(zero)).abs()) + ref.abs() * 1e-6 + 1e-7;
  EXPECT_TRUE(((got - ref).abs() <= bound).all().item<bool>()) << (got - ref).abs().max().item<float>();
  // And it is not trivially loose: the bound is well under one quantisation step.
  EXPECT_LT((bound / rep(d)).mean().item<float>(), 0.1);
  if (type == GgmlType::kQ4_0) {
    EXPECT_EQ(zero.abs().max().item<float>(), 0.0f);  // Q4_0: zero is exactly 0
  }
}

TEST(LinearWeightTest, Q4_1BlocksRepackToInt4Exactly) { CheckQ4Exact(GgmlType::kQ4_1, 64, 128); }
TEST(LinearWeightTest, Q4_0BlocksRepackToInt4Exactly) { CheckQ4Exact(GgmlType::kQ4_0, 32, 96); }
TEST(LinearWeightTest, Int4TakesAnyRowCount) { CheckQ4Exact(GgmlType::kQ4_1, 37, 64); }

// y == x W^T + b within 1e-4 of sum |x||W|: float32 rounding plus the kernels' int16 activation step (each
// activation off by at most 2^-16 of its block's largest magnitude, ~3x a Gaussian element's mean |x|). One
// bf16 step of a scale (2^-8) or a wrong zero or row costs far more.
void ExpectLinear(const at::Tensor& got, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  at::Tensor ref = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t()) + b.to(at::kDouble);
  ASSERT_EQ(got.sizes(), ref.sizes());
  at::Tensor mag = at::matmul(x.abs().to(at::kDouble), w.abs().to(at::kDouble).t());
  at::Tensor err = (got.to(at::kDouble) - ref).abs();
  EXPECT_TRUE((err <= mag * 1e-4 + 1e-6).all().item<bool>()) << x.size(0) << " rows: " << err.max().item<double>();
}

constexpr QuantizedPath kPaths[] = {QuantizedPath::kAuto, QuantizedPath::kRowKernel, QuantizedPath::kPanel,
                                    QuantizedPath::kDense};

TEST(LinearWeightTest, Int8ForwardEqualsLinearOnDequantisedWeights) {
  at::manual_seed(3);
  at::Tensor w = at::randn({40, 72}) * 0.2, b = at::randn({40}), x = at::randn({5, 72});
  w[7].zero_();  // an all-zero row keeps scale 1 and stays zero
  auto lw = LinearWeight::MakeInt8(w, b, at::kCPU);
  ASSERT_TRUE(lw.ok()) << lw.status();
  EXPECT_EQ(lw->format(), WeightFormat::kInt8);
  // The documented formula: scale = bf16(max|row| / 127), q = round(w / scale).
  at::Tensor scale = Bf16(w.abs().amax(1) / 127.0);
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  at::Tensor wq = at::clamp(at::round(w / scale.unsqueeze(1)), -127, 127) * scale.unsqueeze(1);
  EXPECT_TRUE(((wq - w).abs() <= scale.unsqueeze(1) * 0.5 + 1e-7).all().item<bool>());
  // Every input length and every path (the row kernel with int16 activations, the panel GEMM, dequantise +
  // float GEMM; kAuto picks by rows) compute x W^T on the same weights.
  for (QuantizedPath path : kPaths) {
    ForceQuantizedPath(path);
    for (int64_t rows : {1, 6, 16, 17, 70, 128, 130}) {
      SCOPED_TRACE(::testing::Message() << "path " << static_cast<int>(path) << " rows " << rows);
      at::Tensor xr = at::randn({rows, 72});
      ExpectLinear(lw->Forward(xr), xr, wq, b);
    }
  }
  ForceQuantizedPath(QuantizedPath::kAuto);
  // An input length that is not a multiple of 8 (the panel micro-kernel's scalar tail).
  at::Tensor w_odd = at::randn({7, 77}) * 0.2;
  auto odd = LinearWeight::MakeInt8(w_odd, at::zeros({7}), at::kCPU);
  ASSERT_TRUE(odd.ok()) << odd.status();
  at::Tensor odd_scale = Bf16(w_odd.abs().amax(1) / 127.0);
  at::Tensor odd_q = at::clamp(at::round(w_odd / odd_scale.unsqueeze(1)), -127, 127) * odd_scale.unsqueeze(1);
  for (QuantizedPath path : kPaths) {
    ForceQuantizedPath(path);
    at::Tensor xr = at::randn({11, 77});
    ExpectLinear(odd->Forward(xr), xr, odd_q, at::zeros({7}));
  }
  ForceQuantizedPath(QuantizedPath::kAuto);
  EXPECT_TRUE(at::allclose(lw->DequantizeWithKernel(), wq, 1e-6, 1e-7));
  // bfloat16 activations in, bfloat16 out.
  EXPECT_EQ(lw->Forward(x.to(at::kBFloat16)).scalar_type(), at::kBFloat16);
}

TEST(LinearWeightTest, Int4ForwardEqualsLinearOnDequantisedWeights) {
  at::manual_seed(4);
  at::Tensor w = at::randn({48, 96}) * 0.2, b = at::randn({48});
  Int4Groups g = QuantizeInt4(w);
  // Every element within half a step (+ the bf16 rounding of the zero) of the original.
  at::Tensor wq = (g.q.to(at::kFloat) - 8) * g.scale.repeat_interleave(32, 1) + g.zero.repeat_interleave(32, 1);
  // |error| <= half a step, plus what clamping costs when bf16 rounded the step down (<= 16 ulp of it), plus
  // the bf16 rounding of the zero.
  at::Tensor s = g.scale.repeat_interleave(32, 1), z = g.zero.repeat_interleave(32, 1);
  EXPECT_TRUE(((wq - w).abs() <= s * (0.5 + 16.0 / 256) + z.abs() / 256).all().item<bool>());
  EXPECT_GT((wq - w).abs().max().item<float>(), 0.0f);  // it did quantise
  EXPECT_GE(g.q.min().item<int>(), 0);
  EXPECT_LE(g.q.max().item<int>(), 15);
  auto lw = LinearWeight::MakeInt4(g, b, at::kCPU);
  ASSERT_TRUE(lw.ok()) << lw.status();
  for (QuantizedPath path : kPaths) {  // kAuto: the kernel up to 3 rows, the panel GEMM to 32, then dense
    ForceQuantizedPath(path);
    for (int64_t rows : {1, 3, 4, 8, 9, 32, 33, 70}) {
      SCOPED_TRACE(::testing::Message() << "path " << static_cast<int>(path) << " rows " << rows);
      at::Tensor xr = at::randn({rows, 96});
      ExpectLinear(lw->Forward(xr), xr, wq, b);
    }
  }
  ForceQuantizedPath(QuantizedPath::kAuto);
}

TEST(LinearWeightTest, DenseKeepsItsDtypeAndConvertsActivations) {
  at::Tensor w = at::randn({16, 32}), x = at::randn({3, 32});
  LinearWeight f32 = LinearWeight::MakeDense(w, at::kFloat, at::Tensor(), at::kCPU);
  EXPECT_TRUE(at::equal(f32.Forward(x), at::linear(x, w)));
  LinearWeight bf = LinearWeight::MakeDense(w, at::kBFloat16, at::Tensor(), at::kCPU);
  EXPECT_EQ(bf.format(), WeightFormat::kBF16);
  at::Tensor y = bf.Forward(x);
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(y, at::linear(Bf16(x), Bf16(w)), 1.0 / 128, 1e-3));
}

TEST(LinearWeightTest, BadShapesAndDevicesAreRejected) {
  Int4Groups g = QuantizeInt4(at::randn({16, 64}));
  Int4Groups odd{at::zeros({16, 48}, at::kByte), at::ones({16, 1}), at::zeros({16, 1})};
  auto st = LinearWeight::MakeInt4(odd, at::Tensor(), at::kCPU).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("divisible by 32"), std::string::npos) << st;
  EXPECT_EQ(LinearWeight::MakeInt4(g, at::Tensor(), at::Device("cuda:0")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearWeight::MakeInt8(at::randn({4, 8}), at::Tensor(), at::Device("cuda:0")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Through the loader: a 48-wide input asked as int4 names the tensor.
  auto src = MakeMapWeights({{"w", at::randn({16, 48})}});
  auto lw = LoadLinear(*src, {WeightFormat::kInt4, at::kFloat, at::kCPU}, {{"w", {16, 48}}});
  EXPECT_EQ(lw.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lw.status().message().find("w has 48 input features"), std::string::npos) << lw.status();
  EXPECT_EQ(ParseWeightFormat("int3").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseWeightFormat("int4"), WeightFormat::kInt4);
}

TEST(LinearWeightTest, AutoKeepsTheStoredPrecisionClassOnCpu) {
  WeightPlan cpu{WeightFormat::kAuto, at::kFloat, at::kCPU};
  EXPECT_EQ(ResolveWeightFormat(cpu, GgmlType::kQ4_1), WeightFormat::kInt4);
  EXPECT_EQ(ResolveWeightFormat(cpu, GgmlType::kQ4_0), WeightFormat::kInt4);
  EXPECT_EQ(ResolveWeightFormat(cpu, GgmlType::kQ8_0), WeightFormat::kInt8);
  EXPECT_EQ(ResolveWeightFormat(cpu, GgmlType::kQ6_K), WeightFormat::kInt8);
  EXPECT_EQ(ResolveWeightFormat(cpu, GgmlType::kF16), WeightFormat::kF32);
  EXPECT_EQ(ResolveWeightFormat(cpu, std::nullopt), WeightFormat::kF32);
  WeightPlan cuda{WeightFormat::kAuto, at::kBFloat16, at::Device("cuda:0")};
  EXPECT_EQ(ResolveWeightFormat(cuda, GgmlType::kQ4_1), WeightFormat::kBF16);
  WeightPlan dflt{WeightFormat::kDtype, at::kBFloat16, at::kCPU};
  EXPECT_EQ(ResolveWeightFormat(dflt, GgmlType::kQ4_1), WeightFormat::kBF16);
}

}  // namespace
}  // namespace titand
