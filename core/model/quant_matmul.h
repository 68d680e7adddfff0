// CPU kernels for weight-only quantised matmuls, y [M, out] = x [M, in] · W^T, float32 in and out
// (core/model/linear_weight.h picks them for decode-sized inputs; the formats are documented there):
//   int4  group-wise, groups of 32 along `in`: W[n, k] = scale[n, g] * (q[n, k] - 8) + zero[n, g], g = k / 32.
//         codes uint8 [out, in/2]: byte 16*g + j of row n holds q[n, 32g + j] in its low nibble and
//         q[n, 32g + 16 + j] in its high nibble (the order of GGUF's Q4_0/Q4_1 blocks);
//         scale_zero bfloat16 bits [out, in/32, 2] = (scale, zero).
//   int8  per output channel: W[n, k] = scale[n] * q[n, k]; q int8 [out, in], scale bfloat16 bits [out].
// Activations are quantised per row and block of 32 to int16:
//   dx = max|x_block| / 32767, xq = round-half-even(x / dx) in [-32767, 32767],
// (a block with a NaN gets dx = NaN, one with an infinity dx = inf: its outputs are not finite, as in float
// arithmetic), so each activation is off by at most dx / 2 (1/65534 of its block's largest magnitude: finer than the
// bfloat16 activations LibTorch's kernels take), which bounds the error (tests/unit/model/
// quant_matmul_test.cc). Per block the integer dot products are exact (_mm256_madd_epi16), then
//   int4: y = sum_g scale * dx * sum_k q xq + (zero - 8 scale) * sum_k x   (the float sum of the block)
//   int8: y = scale * sum_g dx * sum_k q xq.
// Why our own: LibTorch's weight-only CPU kernels (_weight_int4pack_mm_for_cpu, _weight_int8pack_mm) ran at
// ~2.5 GMAC/s for one decode row on the 2-core AVX2 VM; these read a weight row once per 4 input rows
// (BENCHMARKS.md, issue 9, session 7). An 8-bit activation variant (llama.cpp's Q8_0 scheme) was tried
// and rejected: it tripled the log-prob drift of the bundled Q4_1 model (mean 0.045 -> 0.148 nats).
// AVX2 + FMA is checked once at run time; otherwise portable loops do the same integer lanes and float
// operations in the same order, so both paths give identical bits. Output rows are split across LibTorch's
// intra-op threads; each y[m, n] is computed by one thread in a fixed order, so a row of x gives the same
// bits alone or inside a batch.
#pragma once

#include <cstdint>

namespace titand {

// y[m, n] = sum_k x[m, k] * W[n, k]. x float32 [m, in] row-major, y float32 [m, out] row-major.
// in % 32 == 0 (the caller checks). No errors: shapes are the caller's contract.
void Int4MatmulCpu(const float* x, int64_t m, int64_t in, const uint8_t* codes, const uint16_t* scale_zero,
                   int64_t out, float* y);
void Int8MatmulCpu(const float* x, int64_t m, int64_t in, const int8_t* q, const uint16_t* scale, int64_t out,
                   float* y);

// W rows [0, out) as float32 [out, in] (the prefill path: dequantise once, then a float GEMM).
void Int4DequantizeCpu(const uint8_t* codes, const uint16_t* scale_zero, int64_t out, int64_t in, float* w);

// The batched-decode path (tens of rows): y = x . W^T in float32 with W dequantised (the formats above, exact
// float weights, activations NOT quantised) one panel of output rows at a time into a per-thread buffer that
// stays in L2 (128 KB), multiplied by an FMA micro-kernel (4 input rows x 2 weight rows). Same arithmetic
// class as "dequantise + float GEMM" without writing and re-reading a float32 copy of the layer. Panels are
// split across the intra-op threads. Shapes as Int4MatmulCpu / Int8MatmulCpu; no errors.
void Int4PanelMatmulCpu(const float* x, int64_t m, int64_t in, const uint8_t* codes, const uint16_t* scale_zero,
                        int64_t out, float* y);
void Int8PanelMatmulCpu(const float* x, int64_t m, int64_t in, const int8_t* q, const uint16_t* scale, int64_t out,
                        float* y);

// True when the AVX2 + FMA code paths run on this CPU (else the portable loops).
bool QuantKernelsUseAvx2();
// Tests and benchmarks: true forces the portable loops, false restores detection. Not thread-safe: call it
// while no kernel runs.
void UsePortableQuantKernels(bool portable);

}  // namespace titand
