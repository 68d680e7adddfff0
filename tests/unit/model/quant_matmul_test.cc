// The weight-only CPU kernels (core/model/quant_matmul.h) against x W^T evaluated in double on the documented
// weight formulas (int4: groups of 32, nibble order of GGUF blocks, bf16 scale and zero; int8: per-row bf16
// scale), within the documented cost of quantising activations per block of 32 (each off by at most dx / 2)
// plus float32 rounding; every row-tile size (1-4 and remainders), odd output counts, an int8 input length
// that is not a multiple of 32; the panel GEMM (float32 rounding only, panel boundaries, odd lengths); the AVX2
// and portable paths give identical bits; a row's result does not depend on the rows batched with it.
#include "core/model/quant_matmul.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <limits>
#include <vector>

namespace titand {
namespace {

uint16_t Bf16Bits(float f) {  // round to nearest even, as the stored scales are
  at::Tensor t = at::tensor({f}).to(at::kBFloat16);
  uint16_t b;
  std::memcpy(&b, t.data_ptr(), 2);
  return b;
}
double Bf16Value(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Int4Case {
  int64_t out, in;
  std::vector<uint8_t> codes;   // [out, in/2]
  std::vector<uint16_t> sz;     // [out, in/32, 2]
  at::Tensor w;                 // float64 [out, in]: the formula, element by element
  at::Tensor wq;                // float64 [out, in]: scale * q, the part multiplied by quantised activations
};

Int4Case MakeInt4(int64_t out, int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  Int4Case c{out, in, {}, {}, at::empty({out, in}, at::kDouble), at::empty({out, in}, at::kDouble)};
  at::Tensor q = at::randint(0, 16, {out, in}, at::kInt);
  at::Tensor scale = at::rand({out, in / 32}) * 0.05 + 0.001, zero = at::randn({out, in / 32}) * 0.1;
  c.codes.assign(out * in / 2, 0);
  c.sz.assign(out * in / 16, 0);
  auto qa = q.accessor<int, 2>();
  auto w = c.w.accessor<double, 2>();
  auto wq = c.wq.accessor<double, 2>();
  for (int64_t n = 0; n < out; ++n) {
    for (int64_t g = 0; g < in / 32; ++g) {
      const uint16_t sb = Bf16Bits(scale[n][g].item<float>()), zb = Bf16Bits(zero[n][g].item<float>());
      c.sz[(n * (in / 32) + g) * 2] = sb;
      c.sz[(n * (in / 32) + g) * 2 + 1] = zb;
      for (int j = 0; j < 16; ++j) {
        const int lo = qa[n][32 * g + j], hi = qa[n][32 * g + 16 + j];
        c.codes[n * (in / 2) + 16 * g + j] = static_cast<uint8_t>(lo | (hi << 4));
      }
      for (int k = 0; k < 32; ++k) {
        w[n][32 * g + k] = Bf16Value(sb) * (qa[n][32 * g + k] - 8) + Bf16Value(zb);
        wq[n][32 * g + k] = Bf16Value(sb) * qa[n][32 * g + k];
      }
    }
  }
  return c;
}

// dx / 2 per activation, repeated over its block: [m, in] float64 (dx = max|x_block| / 32767).
at::Tensor HalfSteps(const at::Tensor& x) {
  const int64_t m = x.size(0), in = x.size(1), blocks = (in + 31) / 32;
  at::Tensor padded = at::zeros({m, blocks * 32}, at::kDouble);
  padded.narrow(1, 0, in).copy_(x.to(at::kDouble));
  at::Tensor dx = padded.reshape({m, blocks, 32}).abs().amax(-1) / 32767.0;
  return (dx / 2).repeat_interleave(32, 1).narrow(1, 0, in);
}

// |y - x W^T| <= (dx/2) . |Wq|^T * (1 + 1e-6) + 2e-6 * (|x| . |W|^T) + 1e-6, in double: each quantised
// activation is off by at most half its block's step, Wq is the part of W it multiplies, and float32
// accumulation over `in` terms costs the rest. Also checks the bound is tight enough to mean something.
void ExpectMatches(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w, const at::Tensor& wq) {
  at::Tensor xd = x.to(at::kDouble);
  at::Tensor ref = at::matmul(xd, w.t());
  at::Tensor quant = at::matmul(HalfSteps(x), wq.abs().t()) * (1 + 1e-6);
  at::Tensor mag = at::matmul(xd.abs(), w.abs().t());
  at::Tensor err = (y.to(at::kDouble) - ref).abs();
  EXPECT_TRUE((err <= quant + mag * 2e-6 + 1e-6).all().item<bool>())
      << "max err " << err.max().item<double>() << " max bound " << (quant + mag * 2e-6).max().item<double>();
  EXPECT_GT(ref.abs().max().item<double>(), 1e-2);               // the products are far from zero
  EXPECT_LT((quant / mag).max().item<double>(), 1e-3);           // the bound is a small fraction of |x||W|
}

class QuantMatmulTest : public ::testing::TestWithParam<bool> {  // param: force the portable loops
 protected:
  void SetUp() override { UsePortableQuantKernels(GetParam()); }
  void TearDown() override { UsePortableQuantKernels(false); }
};

TEST_P(QuantMatmulTest, Int4MatchesTheFormulaForEveryRowCount) {
  Int4Case c = MakeInt4(/*out=*/37, /*in=*/96, 5);
  for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 13}) {
    at::Tensor x = at::randn({m, c.in});
    at::Tensor y = at::full({m, c.out}, std::nanf(""));
    Int4MatmulCpu(x.data_ptr<float>(), m, c.in, c.codes.data(), c.sz.data(), c.out, y.data_ptr<float>());
    SCOPED_TRACE(m);
    ExpectMatches(y, x, c.w, c.wq);
  }
}

TEST_P(QuantMatmulTest, Int4DequantizeIsTheFormula) {
  Int4Case c = MakeInt4(19, 64, 6);
  at::Tensor w = at::empty({c.out, c.in});
  Int4DequantizeCpu(c.codes.data(), c.sz.data(), c.out, c.in, w.data_ptr<float>());
  EXPECT_TRUE(at::allclose(w.to(at::kDouble), c.w, 1e-6, 1e-7));
}

TEST_P(QuantMatmulTest, Int8MatchesTheFormulaForEveryRowCount) {
  at::manual_seed(7);
  for (int64_t in : {72, 64, 5}) {  // 72 and 5: a tail after the 32-wide steps
    const int64_t out = 21;
    at::Tensor q = at::randint(-127, 128, {out, in}, at::kChar);
    std::vector<uint16_t> scale(out);
    at::Tensor w = at::empty({out, in}, at::kDouble);
    for (int64_t n = 0; n < out; ++n) {
      scale[n] = Bf16Bits(0.001f + 0.01f * n);
      w[n] = q[n].to(at::kDouble) * Bf16Value(scale[n]);
    }
    for (int64_t m : {1, 2, 3, 4, 6, 9}) {
      at::Tensor x = at::randn({m, in});
      at::Tensor y = at::full({m, out}, std::nanf(""));
      Int8MatmulCpu(x.data_ptr<float>(), m, in, q.data_ptr<int8_t>(), scale.data(), out, y.data_ptr<float>());
      SCOPED_TRACE(testing::Message() << "in " << in << " m " << m);
      ExpectMatches(y, x, w, w);
    }
  }
}

// The panel GEMM does not quantise activations: float32 rounding alone, |y - x W^T| <= 2e-6 (|x| . |W|^T) + 1e-6.
void ExpectFloatGemm(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w) {
  ASSERT_FALSE(at::isnan(y).any().item<bool>()) << "an output was not written";
  at::Tensor ref = at::matmul(x.to(at::kDouble), w.t());
  at::Tensor bound = at::matmul(x.abs().to(at::kDouble), w.abs().t()) * 2e-6 + 1e-6;
  at::Tensor err = (y.to(at::kDouble) - ref).abs();
  EXPECT_TRUE((err <= bound).all().item<bool>()) << "max error " << err.max().item<double>();
}

// Panels of 32 rows at in = 1024 (128 KB each): 71 outputs cross two panel boundaries and end on an odd row;
// every input-row tile (1-4) and remainder.
TEST_P(QuantMatmulTest, PanelGemmMatchesTheFormula) {
  Int4Case c = MakeInt4(/*out=*/71, /*in=*/1024, 9);
  at::manual_seed(10);
  at::Tensor q8 = at::randint(-127, 128, {71, 1000}, at::kChar);  // int8: an input length with a tail of 8
  std::vector<uint16_t> s8(71);
  at::Tensor w8 = at::empty({71, 1000}, at::kDouble);
  for (int64_t n = 0; n < 71; ++n) {
    s8[n] = Bf16Bits(0.002f + 0.001f * n);
    w8[n] = q8[n].to(at::kDouble) * Bf16Value(s8[n]);
  }
  for (int64_t m : {1, 2, 3, 4, 5, 9, 33}) {
    SCOPED_TRACE(m);
    at::Tensor x = at::randn({m, 1024});
    at::Tensor y = at::full({m, 71}, std::nanf(""));
    Int4PanelMatmulCpu(x.data_ptr<float>(), m, 1024, c.codes.data(), c.sz.data(), 71, y.data_ptr<float>());
    ExpectFloatGemm(y, x, c.w);
    at::Tensor x8 = at::randn({m, 1000});
    at::Tensor y8 = at::full({m, 71}, std::nanf(""));
    Int8PanelMatmulCpu(x8.data_ptr<float>(), m, 1000, q8.data_ptr<int8_t>(), s8.data(), 71, y8.data_ptr<float>());
    ExpectFloatGemm(y8, x8, w8);
  }
}

TEST_P(QuantMatmulTest, ARowGivesTheSameBitsAloneAndInABatch) {
  Int4Case c = MakeInt4(48, 128, 8);
  at::Tensor q8 = at::randint(-127, 128, {48, 128}, at::kChar);
  std::vector<uint16_t> s8(48, Bf16Bits(0.02f));
  at::Tensor x = at::randn({7, 128});
  at::Tensor batch4 = at::empty({7, 48}), batch8 = at::empty({7, 48});
  Int4MatmulCpu(x.data_ptr<float>(), 7, 128, c.codes.data(), c.sz.data(), 48, batch4.data_ptr<float>());
  Int8MatmulCpu(x.data_ptr<float>(), 7, 128, q8.data_ptr<int8_t>(), s8.data(), 48, batch8.data_ptr<float>());
  for (int64_t r = 0; r < 7; ++r) {
    at::Tensor row = x[r].unsqueeze(0).contiguous();
    at::Tensor alone4 = at::empty({1, 48}), alone8 = at::empty({1, 48});
    Int4MatmulCpu(row.data_ptr<float>(), 1, 128, c.codes.data(), c.sz.data(), 48, alone4.data_ptr<float>());
    Int8MatmulCpu(row.data_ptr<float>(), 1, 128, q8.data_ptr<int8_t>(), s8.data(), 48, alone8.data_ptr<float>());
    EXPECT_TRUE(at::equal(alone4[0], batch4[r])) << r;
    EXPECT_TRUE(at::equal(alone8[0], batch8[r])) << r;
  }
}

TEST(QuantMatmulPathsTest, PortableAndAvx2GiveIdenticalBits) {
  if (!QuantKernelsUseAvx2()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: only the portable path exists";
  Int4Case c = MakeInt4(33, 160, 9);
  at::Tensor q8 = at::randint(-127, 128, {33, 150}, at::kChar);
  std::vector<uint16_t> s8(33);
  for (int n = 0; n < 33; ++n) s8[n] = Bf16Bits(0.003f * (n + 1));
  at::Tensor x4 = at::randn({6, 160}), x8 = at::randn({6, 150});
  at::Tensor y[2][4];  // int4 row kernel, int8 row kernel, int4 panel, int8 panel
  for (int portable = 0; portable < 2; ++portable) {
    UsePortableQuantKernels(portable == 1);
    for (at::Tensor& t : y[portable]) t = at::empty({6, 33});
    Int4MatmulCpu(x4.data_ptr<float>(), 6, 160, c.codes.data(), c.sz.data(), 33, y[portable][0].data_ptr<float>());
    Int8MatmulCpu(x8.data_ptr<float>(), 6, 150, q8.data_ptr<int8_t>(), s8.data(), 33, y[portable][1].data_ptr<float>());
    Int4PanelMatmulCpu(x4.data_ptr<float>(), 6, 160, c.codes.data(), c.sz.data(), 33,
                       y[portable][2].data_ptr<float>());
    Int8PanelMatmulCpu(x8.data_ptr<float>(), 6, 150, q8.data_ptr<int8_t>(), s8.data(), 33,
                       y[portable][3].data_ptr<float>());
  }
  UsePortableQuantKernels(false);
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(at::equal(y[0][k], y[1][k])) << "kernel " << k;
  at::Tensor w = at::empty({33, 160}), w_portable = at::empty({33, 160});
  Int4DequantizeCpu(c.codes.data(), c.sz.data(), 33, 160, w.data_ptr<float>());
  UsePortableQuantKernels(true);
  Int4DequantizeCpu(c.codes.data(), c.sz.data(), 33, 160, w_portable.data_ptr<float>());
  UsePortableQuantKernels(false);
  EXPECT_TRUE(at::equal(w, w_portable));
}

TEST_P(QuantMatmulTest, NonFiniteActivationsGiveNonFiniteOutputs) {
  Int4Case c = MakeInt4(8, 64, 10);
  at::Tensor q8 = at::randint(-127, 128, {8, 64}, at::kChar);
  std::vector<uint16_t> s8(8, Bf16Bits(0.01f));
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    at::Tensor x = at::randn({3, 64});
    x[1][40] = bad;  // row 1, second block
    at::Tensor y4 = at::empty({3, 8}), y8 = at::empty({3, 8});
    Int4MatmulCpu(x.data_ptr<float>(), 3, 64, c.codes.data(), c.sz.data(), 8, y4.data_ptr<float>());
    Int8MatmulCpu(x.data_ptr<float>(), 3, 64, q8.data_ptr<int8_t>(), s8.data(), 8, y8.data_ptr<float>());
    for (const at::Tensor& y : {y4, y8}) {
      EXPECT_FALSE(at::isfinite(y[1]).any().item<bool>()) << bad;      // the row that holds it
      EXPECT_TRUE(at::isfinite(y[0]).all().item<bool>()) << bad;       // its neighbours in the batch do not
      EXPECT_TRUE(at::isfinite(y[2]).all().item<bool>()) << bad;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, QuantMatmulTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Portable" : "Native"; });

}  // namespace
}  // namespace titand
