#include "core/model/quant_matmul.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TITAND_X86 1
#else
#define TITAND_X86 0
#endif

namespace titand {
namespace {

constexpr int64_t kBlock = 32;  // activation block = int4 group: values per scale
constexpr int kRowTile = 4;     // input rows that share one read of a weight row
constexpr int kLanes = 8;       // integer partial sums per block (see DotLanes)
constexpr float kQMax = 32767.0f;  // activations are quantised to int16

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Output rows per task: enough work that a thread's share is not dominated by the fork/join.
int64_t RowGrain(int64_t in) { return std::max<int64_t>(16, 65536 / std::max<int64_t>(in, 1)); }

// x quantised per row and block of 32: dx = max|x| / 32767, xq = round-half-even(x / dx) in [-32767, 32767]
// (dx = 0 and xq = 0 for an all-zero block), zero-padded to whole blocks; plus the float sum of each block.
struct QuantizedRows {
  int64_t blocks = 0;         // per row: ceil(in / 32)
  std::vector<int16_t> q;     // [m, blocks * 32]
  std::vector<float> scale;   // [m, blocks]
  std::vector<float> sum;     // [m, blocks]
};

QuantizedRows QuantizeRows(const float* x, int64_t m, int64_t in) {
  QuantizedRows r;
  r.blocks = (in + kBlock - 1) / kBlock;
  r.q.assign(static_cast<size_t>(m * r.blocks * kBlock), 0);
  r.scale.assign(static_cast<size_t>(m * r.blocks), 0.0f);
  r.sum.assign(static_cast<size_t>(m * r.blocks), 0.0f);
  for (int64_t row = 0; row < m; ++row) {
    for (int64_t b = 0; b < r.blocks; ++b) {
      const int64_t k0 = b * kBlock, len = std::min<int64_t>(kBlock, in - k0);
      const float* p = x + row * in + k0;
      float amax = 0.0f, s[4] = {0, 0, 0, 0};
      bool nan = false;
      for (int64_t j = 0; j < len; ++j) {
        amax = std::max(amax, std::fabs(p[j]));
        s[j & 3] += p[j];
        nan |= std::isnan(p[j]);
      }
      const float inv = amax > 0.0f ? kQMax / amax : 0.0f;
      int16_t* o = r.q.data() + (row * r.blocks + b) * kBlock;
      for (int64_t j = 0; j < len; ++j) {
        const float v = p[j] * inv;  // NaN (a NaN input, or inf * 0) gets code 0; the scale carries it
        o[j] = std::isnan(v) ? 0 : static_cast<int16_t>(std::clamp(std::nearbyint(v), -kQMax, kQMax));
      }
      // A NaN or infinite activation makes the block's scale NaN / inf, so the outputs it feeds are not
      // finite, as in float arithmetic (never a silently finite result).
      r.scale[row * r.blocks + b] = nan ? std::numeric_limits<float>::quiet_NaN() : amax / kQMax;
      r.sum[row * r.blocks + b] = (s[0] + s[1]) + (s[2] + s[3]);
    }
  }
  return r;
}

// The final reduction of the 8 float lanes, in the order HSum (AVX2) adds them.
inline float SumLanes(const float* a) {
  const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
  return (t0 + t2) + (t1 + t3);
}

// ---- portable loops: the same integer lanes and the same float operations, in the same order, as the
// AVX2 code below, so both give identical bits. ----

// The 8 integer lanes of one block (what two _mm256_madd_epi16 and an add give): lane i =
// w[2i] x[2i] + w[2i+1] x[2i+1] + w[16+2i] x[16+2i] + w[17+2i] x[17+2i], exact in int32 and in float
// (|lane| <= 4 * 127 * 32767 < 2^24).
inline void DotLanes(const int* w, const int16_t* xq, int32_t* lanes) {
  for (int i = 0; i < kLanes; ++i) {
    lanes[i] = w[2 * i] * xq[2 * i] + w[2 * i + 1] * xq[2 * i + 1] + w[16 + 2 * i] * xq[16 + 2 * i] +
               w[17 + 2 * i] * xq[17 + 2 * i];
  }
}

template <int R>
void Int4TilePortable(const QuantizedRows& xr, int64_t r0, const uint8_t* codes, const uint16_t* sz, float* y,
                      int64_t out) {
  float acc[R][kLanes], c[R];
  for (int r = 0; r < R; ++r) {
    std::fill(acc[r], acc[r] + kLanes, 0.0f);
    c[r] = 0.0f;
  }
  int w[kBlock];
  int32_t lanes[kLanes];
  for (int64_t g = 0; g < xr.blocks; ++g) {
    const uint8_t* b = codes + g * 16;
    for (int j = 0; j < 16; ++j) {
      w[j] = b[j] & 0x0F;
      w[16 + j] = b[j] >> 4;
    }
    const float s = Bf16ToFloat(sz[2 * g]), z8 = std::fma(-8.0f, s, Bf16ToFloat(sz[2 * g + 1]));
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * xr.blocks + g;
      DotLanes(w, xr.q.data() + rb * kBlock, lanes);
      for (int i = 0; i < kLanes; ++i) {
        acc[r][i] = std::fma(static_cast<float>(lanes[i]) * xr.scale[rb], s, acc[r][i]);
      }
      c[r] = std::fma(z8, xr.sum[rb], c[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r * out] = SumLanes(acc[r]) + c[r];
}

template <int R>
void Int8TilePortable(const QuantizedRows& xr, int64_t r0, const int8_t* q, int64_t in, float scale, float* y,
                      int64_t out) {
  float acc[R][kLanes];
  for (int r = 0; r < R; ++r) std::fill(acc[r], acc[r] + kLanes, 0.0f);
  int w[kBlock];
  int32_t lanes[kLanes];
  for (int64_t g = 0; g < xr.blocks; ++g) {
    const int64_t k0 = g * kBlock;
    for (int j = 0; j < kBlock; ++j) w[j] = k0 + j < in ? q[k0 + j] : 0;
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * xr.blocks + g;
      DotLanes(w, xr.q.data() + rb * kBlock, lanes);
      for (int i = 0; i < kLanes; ++i) acc[r][i] = std::fma(static_cast<float>(lanes[i]), xr.scale[rb], acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r) y[r * out] = scale * SumLanes(acc[r]);
}

// ---- AVX2 + FMA ----
#if TITAND_X86

__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  alignas(32) float a[kLanes];
  _mm256_store_ps(a, v);
  return SumLanes(a);
}

// One block: w0 = weights 0..15, w1 = weights 16..31 as int16; the row's 32 int16 activations. The 8 lanes
// of DotLanes, as floats (exact).
__attribute__((target("avx2,fma"))) inline __m256 DotLanesAvx2(__m256i w0, __m256i w1, const int16_t* xq) {
  const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 16));
  return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1)));
}

// One int4 weight row n against R quantised input rows: per group the 32 codes are widened once to int16
// (low nibbles = elements 0..15, high nibbles = 16..31), dotted with each row's int16 block in integers,
// then acc += (lanes * dx) * scale and c += (zero - 8 scale) * sum(x of the block).
template <int R>
__attribute__((target("avx2,fma"))) void Int4TileAvx2(const QuantizedRows& xr, int64_t r0, const uint8_t* codes,
                                                       const uint16_t* sz, float* y, int64_t out) {
  const __m256i low4 = _mm256_set1_epi16(0x0F);
  __m256 acc[R];
  float c[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    c[r] = 0.0f;
  }
  for (int64_t g = 0; g < xr.blocks; ++g) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + g * 16)));
    const __m256i w0 = _mm256_and_si256(b, low4), w1 = _mm256_srli_epi16(b, 4);
    const float s = Bf16ToFloat(sz[2 * g]), z8 = std::fma(-8.0f, s, Bf16ToFloat(sz[2 * g + 1]));
    const __m256 vs = _mm256_set1_ps(s);
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * xr.blocks + g;
      const __m256 t = _mm256_mul_ps(DotLanesAvx2(w0, w1, xr.q.data() + rb * kBlock),
                                     _mm256_broadcast_ss(xr.scale.data() + rb));
      acc[r] = _mm256_fmadd_ps(t, vs, acc[r]);
      c[r] = std::fma(z8, xr.sum[rb], c[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r * out] = HSum(acc[r]) + c[r];
}

// One int8 weight row against R quantised input rows.
template <int R>
__attribute__((target("avx2,fma"))) void Int8TileAvx2(const QuantizedRows& xr, int64_t r0, const int8_t* q, int64_t in,
                                                       float scale, float* y, int64_t out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  alignas(32) int8_t tail[kBlock];
  for (int64_t g = 0; g < xr.blocks; ++g) {
    const int64_t k0 = g * kBlock;
    const int8_t* wp = q + k0;
    if (k0 + kBlock > in) {  // the row's last, partial block: zero-padded copy (never read past the row)
      std::memset(tail, 0, sizeof tail);
      std::memcpy(tail, wp, static_cast<size_t>(in - k0));
      wp = tail;
    }
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 16)));
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * xr.blocks + g;
      acc[r] = _mm256_fmadd_ps(DotLanesAvx2(w0, w1, xr.q.data() + rb * kBlock),
                               _mm256_broadcast_ss(xr.scale.data() + rb), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r * out] = scale * HSum(acc[r]);
}

// W rows [begin, end) = scale * (q - 8) + zero, one rounding (fma), as the portable loop; row n goes to
// w + (n - begin) * in.
__attribute__((target("avx2,fma"))) void Int4DequantizeRowsAvx2(const uint8_t* codes, const uint16_t* sz,
                                                                 int64_t begin, int64_t end, int64_t in, float* w) {
  const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  const int64_t groups = in / kBlock;
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + n * (in / 2) + g * 16));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, low4), eight);
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low4), eight);
      const __m256 vs = _mm256_set1_ps(Bf16ToFloat(sz[(n * groups + g) * 2]));
      const __m256 vz = _mm256_set1_ps(Bf16ToFloat(sz[(n * groups + g) * 2 + 1]));
      float* o = w + (n - begin) * in + g * kBlock;
      const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
      for (int p = 0; p < 4; ++p) {
        _mm256_storeu_ps(o + 8 * p, _mm256_fmadd_ps(vs, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[p])), vz));
      }
    }
  }
}

// The panel GEMM's micro-kernel: y[r, o] = x[r, :] . w[o, :] for R input rows and O weight rows (R x O
// accumulators of 8 lanes, then the lanes in SumLanes' order; the tail of `in` past a multiple of 8 in scalar).
template <int R, int O>
__attribute__((target("avx2,fma"))) void GemmTileAvx2(const float* x, int64_t in, const float* w, float* y,
                                                      int64_t ldy) {
  __m256 acc[R][O];
  for (int r = 0; r < R; ++r) {
    for (int o = 0; o < O; ++o) acc[r][o] = _mm256_setzero_ps();
  }
  const int64_t in8 = in - in % 8;
  for (int64_t i = 0; i < in8; i += 8) {
    __m256 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * in + i);
    for (int o = 0; o < O; ++o) {
      const __m256 wv = _mm256_loadu_ps(w + o * in + i);
      for (int r = 0; r < R; ++r) acc[r][o] = _mm256_fmadd_ps(xv[r], wv, acc[r][o]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int o = 0; o < O; ++o) {
      float s = HSum(acc[r][o]);
      for (int64_t i = in8; i < in; ++i) s = std::fma(x[r * in + i], w[o * in + i], s);
      y[r * ldy + o] = s;
    }
  }
}

bool DetectAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

#else
bool DetectAvx2() { return false; }
#endif

// Read on every call; written only by UsePortableQuantKernels (tests and benchmarks, before any kernel runs).
bool use_avx2 = DetectAvx2();

// Calls tile(R, r0) for r0 = 0, 4, 8, ... and once more for the remaining m % 4 rows.
template <typename TileFn>
void ForRowTiles(int64_t m, TileFn&& tile) {
  int64_t r0 = 0;
  for (; r0 + kRowTile <= m; r0 += kRowTile) tile(std::integral_constant<int, kRowTile>(), r0);
  switch (m - r0) {
    case 3: tile(std::integral_constant<int, 3>(), r0); break;
    case 2: tile(std::integral_constant<int, 2>(), r0); break;
    case 1: tile(std::integral_constant<int, 1>(), r0); break;
    default: break;
  }
}

// W rows [begin, end) as float32 into w (row n at w + (n - begin) * in).
void Int4DequantizeRows(const uint8_t* codes, const uint16_t* sz, int64_t begin, int64_t end, int64_t in, float* w) {
#if TITAND_X86
  if (use_avx2) return Int4DequantizeRowsAvx2(codes, sz, begin, end, in, w);
#endif
  const int64_t groups = in / kBlock;
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* b = codes + n * (in / 2) + g * 16;
      const float s = Bf16ToFloat(sz[(n * groups + g) * 2]);
      const float z = Bf16ToFloat(sz[(n * groups + g) * 2 + 1]);
      float* o = w + (n - begin) * in + g * kBlock;
      for (int j = 0; j < 16; ++j) {
        o[j] = std::fma(s, static_cast<float>((b[j] & 0x0F) - 8), z);
        o[16 + j] = std::fma(s, static_cast<float>((b[j] >> 4) - 8), z);
      }
    }
  }
}

template <int R, int O>
void GemmTilePortable(const float* x, int64_t in, const float* w, float* y, int64_t ldy) {
  for (int r = 0; r < R; ++r) {
    for (int o = 0; o < O; ++o) {
      float lanes[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
      const int64_t in8 = in - in % 8;
      for (int64_t i = 0; i < in8; i += 8) {
        for (int l = 0; l < kLanes; ++l) lanes[l] = std::fma(x[r * in + i + l], w[o * in + i + l], lanes[l]);
      }
      float s = SumLanes(lanes);
      for (int64_t i = in8; i < in; ++i) s = std::fma(x[r * in + i], w[o * in + i], s);
      y[r * ldy + o] = s;
    }
  }
}

// y[r, o] (row stride ldy) = x [m, in] . w [n, in]^T, tiles of 4 input rows x 2 weight rows.
void PanelGemm(const float* x, int64_t m, int64_t in, const float* w, int64_t n, float* y, int64_t ldy) {
  auto tile = [&](auto rr, auto oo, int64_t r0, int64_t o0) {
    constexpr int R = decltype(rr)::value, O = decltype(oo)::value;
#if TITAND_X86
    if (use_avx2) return GemmTileAvx2<R, O>(x + r0 * in, in, w + o0 * in, y + r0 * ldy + o0, ldy);
#endif
    GemmTilePortable<R, O>(x + r0 * in, in, w + o0 * in, y + r0 * ldy + o0, ldy);
  };
  for (int64_t r0 = 0; r0 < m; r0 += kRowTile) {
    auto rows = [&](auto rr) {
      int64_t o0 = 0;
      for (; o0 + 2 <= n; o0 += 2) tile(rr, std::integral_constant<int, 2>(), r0, o0);
      if (o0 < n) tile(rr, std::integral_constant<int, 1>(), r0, o0);
    };
    switch (std::min<int64_t>(kRowTile, m - r0)) {
      case 4: rows(std::integral_constant<int, 4>()); break;
      case 3: rows(std::integral_constant<int, 3>()); break;
      case 2: rows(std::integral_constant<int, 2>()); break;
      default: rows(std::integral_constant<int, 1>()); break;
    }
  }
}

// Weights dequantised per thread a panel of output rows at a time (kPanelFloats: the panel stays in L2 while
// every input row is multiplied with it), never as a whole float32 copy of the layer.
constexpr int64_t kPanelFloats = 32 * 1024;

template <typename DequantizeRows>
void PanelMatmul(const float* x, int64_t m, int64_t in, int64_t out, float* y, DequantizeRows&& dequantize) {
  if (m <= 0 || out <= 0) return;
  const int64_t panel = std::min(out, std::max<int64_t>(2, (kPanelFloats / std::max<int64_t>(in, 1)) & ~int64_t{1}));
  const int64_t panels = (out + panel - 1) / panel;
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> w;
    if (static_cast<int64_t>(w.size()) < panel * in) w.resize(panel * in);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n0 = p * panel, n1 = std::min(out, n0 + panel);
      dequantize(n0, n1, w.data());
      PanelGemm(x, m, in, w.data(), n1 - n0, y + n0, out);
    }
  });
}

}  // namespace

bool QuantKernelsUseAvx2() { return use_avx2; }
void UsePortableQuantKernels(bool portable) { use_avx2 = !portable && DetectAvx2(); }

void Int4MatmulCpu(const float* x, int64_t m, int64_t in, const uint8_t* codes, const uint16_t* scale_zero,
                   int64_t out, float* y) {
  if (m <= 0 || out <= 0) return;
  const QuantizedRows xr = QuantizeRows(x, m, in);
  const int64_t groups = in / kBlock;
  at::parallel_for(0, out, RowGrain(in), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const uint8_t* cn = codes + n * (in / 2);
      const uint16_t* sn = scale_zero + n * groups * 2;
      ForRowTiles(m, [&](auto tile_rows, int64_t r0) {
        constexpr int R = decltype(tile_rows)::value;
#if TITAND_X86
        if (use_avx2) return Int4TileAvx2<R>(xr, r0, cn, sn, y + r0 * out + n, out);
#endif
        Int4TilePortable<R>(xr, r0, cn, sn, y + r0 * out + n, out);
      });
    }
  });
}

void Int8MatmulCpu(const float* x, int64_t m, int64_t in, const int8_t* q, const uint16_t* scale, int64_t out,
                   float* y) {
  if (m <= 0 || out <= 0) return;
  const QuantizedRows xr = QuantizeRows(x, m, in);
  at::parallel_for(0, out, RowGrain(in), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const int8_t* qn = q + n * in;
      const float s = Bf16ToFloat(scale[n]);
      ForRowTiles(m, [&](auto tile_rows, int64_t r0) {
        constexpr int R = decltype(tile_rows)::value;
#if TITAND_X86
        if (use_avx2) return Int8TileAvx2<R>(xr, r0, qn, in, s, y + r0 * out + n, out);
#endif
        Int8TilePortable<R>(xr, r0, qn, in, s, y + r0 * out + n, out);
      });
    }
  });
}

void Int4DequantizeCpu(const uint8_t* codes, const uint16_t* scale_zero, int64_t out, int64_t in, float* w) {
  at::parallel_for(0, out, RowGrain(in), [&](int64_t begin, int64_t end) {
    Int4DequantizeRows(codes, scale_zero, begin, end, in, w + begin * in);
  });
}

void Int4PanelMatmulCpu(const float* x, int64_t m, int64_t in, const uint8_t* codes, const uint16_t* scale_zero,
                        int64_t out, float* y) {
  PanelMatmul(x, m, in, out, y, [&](int64_t begin, int64_t end, float* w) {
    Int4DequantizeRows(codes, scale_zero, begin, end, in, w);
  });
}

void Int8PanelMatmulCpu(const float* x, int64_t m, int64_t in, const int8_t* q, const uint16_t* scale, int64_t out,
                        float* y) {
  PanelMatmul(x, m, in, out, y, [&](int64_t begin, int64_t end, float* w) {
    for (int64_t n = begin; n < end; ++n) {
      const float s = Bf16ToFloat(scale[n]);
      const int8_t* qn = q + n * in;
      float* o = w + (n - begin) * in;
      for (int64_t k = 0; k < in; ++k) o[k] = s * static_cast<float>(qn[k]);
    }
  });
}

}  // namespace titand
