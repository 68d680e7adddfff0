#include "core/model/hybrid_decode_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>

namespace titand {
namespace {

#if defined(__x86_64__)
bool DetectAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
bool DetectAvx2() { return false; }
#endif
bool use_avx2 = DetectAvx2();

// Rows of a [B, heads, D] (or [B, heads]) float32 tensor read through its row stride.
struct Rows {
  const float* p = nullptr;
  int64_t row = 0;   // elements between rows
  int64_t head = 0;  // elements between heads
  const float* at(int64_t b, int64_t h) const { return p + b * row + h * head; }
};

Rows HeadRows(const at::Tensor& t, int64_t B, int64_t heads, int64_t D, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == heads && t.size(2) == D && t.stride(2) == 1 &&
                  (heads == 1 || t.stride(1) == D) && t.scalar_type() == at::kFloat && t.device().is_cpu(),
              "FusedWindowDecodeCpu: ", name, " must be float32 [", B, ", ", heads, ", ", D,
              "] on the CPU with heads D apart, got ", t.sizes(), " strides ", t.strides(), " ", t.scalar_type());
  return {t.const_data_ptr<float>(), t.stride(0), D};
}

Rows GateRows(const at::Tensor& t, int64_t B, int64_t H, const char* name) {
  if (!t.defined()) return {};
  TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == H && t.scalar_type() == at::kFloat && t.device().is_cpu(),
              "FusedWindowDecodeCpu: gate ", name, " must be float32 [", B, ", ", H, "], got ", t.sizes());
  return {t.const_data_ptr<float>(), t.stride(0), t.stride(1)};
}

// What the (sequence, head) tasks of one step read; filled serially before the parallel loop.
struct Sequence {
  const float* k = nullptr;  // cache [Hkv, slots, D]: head j's slot i at k + j * k_head + i * k_slot
  const float* v = nullptr;
  int64_t k_head = 0, k_slot = 0, v_head = 0, v_slot = 0;
  int64_t seen = 0;       // slots [0, seen) are visible (the new entry written)
  int64_t sink_cols = 0;  // the first sink_cols of them are sinks (scored with the sink rotation)
  float* memory = nullptr;  // S [H, D, D] fp32, contiguous; null without a hybrid branch
};

// A gate of the linear branch (b or a, REFERENCE.md s.1) for one (sequence, head): sigmoid(x . w[h] + c[h])
// from the layer input when learned, else the constant; or read from `given` (HybridLayer::DecodeGates) when
// its weights are not float32 rows on the CPU.
struct Gate {
  const float* w = nullptr;  // [H, hidden] contiguous
  const float* c = nullptr;  // [H] or null
  float constant = 1.0f;
  Rows given;
};

struct Step {
  int64_t H = 0, G = 0, D = 0, hidden = 0;
  float scale = 1.0f;
  Rows q, k, v, x;
  Gate beta, alpha;
  const float* cos = nullptr;  // [B, D] row stride rope_row: RoPE of each sequence's position (RopeCosSin)
  const float* sin = nullptr;
  int64_t rope_row = 0;
  const float* sink_cos = nullptr;  // [B, D/2]: the sink rotation of each sequence (null without sinks)
  const float* sink_sin = nullptr;
  const float* mu = nullptr;  // [H]; null: softmax branch only
  FeatureMap feature_map = FeatureMap::kTptt;
  bool delta = false, gated = false;
  std::vector<Sequence> seqs;
  float* out = nullptr;  // [B, H * D]
};

// The loops below are written once and compiled twice (AVX2 + FMA, baseline): every helper is
// always_inline, so it takes the instruction set of the entry point it is inlined into.
#define TITAND_INLINE inline __attribute__((always_inline))

// Eight independent partial sums (the vectorizer maps them to one 8-lane register or two 4-lane ones).
TITAND_INLINE float Dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

TITAND_INLINE void Axpy(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// y = x / max(||x||_2, 1e-6) in place.
TITAND_INLINE void L2Normalize(float* x, int64_t n) {
  const float norm = std::sqrt(Dot(x, x, n));
  const float inv = 1.0f / std::max(norm, 1e-6f);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// phi (REFERENCE.md s.1) of x [n] into y.
TITAND_INLINE void FeatureMapRow(FeatureMap map, const float* __restrict x, float* __restrict y, int64_t n) {
  switch (map) {
    case FeatureMap::kTptt:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));  // SiLU
      L2Normalize(y, n);
      break;
    case FeatureMap::kElu:  // elu(x) + 1
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] + 1.0f : std::expm1(x[i]) + 1.0f;
      break;
    case FeatureMap::kIdentity:
      std::memcpy(y, x, sizeof(float) * n);
      L2Normalize(y, n);
      break;
  }
}

// x * cos + rotate_half(x) * sin (ApplyRope's rotate-half convention), cos/sin [D] with equal halves.
TITAND_INLINE void Rope(const float* __restrict x, const float* __restrict c, const float* __restrict sn,
                        float* __restrict y, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; ++i) {
    y[i] = x[i] * c[i] - x[i + half] * sn[i];
    y[i + half] = x[i + half] * c[i + half] + x[i] * sn[i + half];
  }
}

TITAND_INLINE float GateValue(const Step& st, const Gate& g, int64_t b, int64_t h) {
  if (g.given.p != nullptr) return *g.given.at(b, h);
  if (g.w == nullptr) return g.constant;
  const float z = Dot(st.x.at(b, 0), g.w + h * st.hidden, st.hidden) + (g.c != nullptr ? g.c[h] : 0.0f);
  return 1.0f / (1.0f + std::exp(-z));
}

// One (sequence b, query head h) pair. scratch: room for seen + 8 D floats.
TITAND_INLINE void Task(const Step& st, int64_t b, int64_t h, float* scratch) {
  const int64_t D = st.D, half = D / 2, j = h / st.G;
  const Sequence& s = st.seqs[b];
  float* scores = scratch;
  float* q_sink = scores + s.seen;
  float* qr = q_sink + D;
  float* o_s = qr + D;
  // Softmax branch.
  Rope(st.q.at(b, h), st.cos + b * st.rope_row, st.sin + b * st.rope_row, qr, D);
  if (s.sink_cols > 0) {  // rope(q, min(t, W + N_s - 1)), rotate-half convention as ApplyRope
    const float* q = st.q.at(b, h);
    const float* c = st.sink_cos + b * half;
    const float* sn = st.sink_sin + b * half;
    for (int64_t i = 0; i < half; ++i) {
      q_sink[i] = q[i] * c[i] - q[i + half] * sn[i];
      q_sink[i + half] = q[i + half] * c[i] + q[i] * sn[i];
    }
  }
  const float* kj = s.k + j * s.k_head;
  const float* vj = s.v + j * s.v_head;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < s.seen; ++i) {
    const float sc = Dot(i < s.sink_cols ? q_sink : qr, kj + i * s.k_slot, D) * st.scale;
    scores[i] = sc;
    mx = std::max(mx, sc);
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < s.seen; ++i) {
    const float e = std::exp(scores[i] - mx);
    scores[i] = e;
    sum += e;
  }
  std::fill(o_s, o_s + D, 0.0f);
  for (int64_t i = 0; i < s.seen; ++i) Axpy(scores[i], vj + i * s.v_slot, o_s, D);
  const float inv_sum = 1.0f / sum;
  float* out = st.out + (b * st.H + h) * D;
  if (st.mu == nullptr) {
    for (int64_t c = 0; c < D; ++c) out[c] = o_s[c] * inv_sum;
    return;
  }
  for (int64_t c = 0; c < D; ++c) o_s[c] *= inv_sum;
  // Linear branch: the memory of head h.
  float* qf = o_s + D;
  float* kf = qf + D;
  float* u = kf + D;
  float* p = u + D;
  float* d = p + D;
  FeatureMapRow(st.feature_map, st.q.at(b, h), qf, D);
  FeatureMapRow(st.feature_map, st.k.at(b, j), kf, D);
  float* S = s.memory + h * D * D;  // [d, dv] row-major
  std::fill(u, u + D, 0.0f);
  std::fill(p, p + D, 0.0f);
  for (int64_t i = 0; i < D; ++i) {  // u = S^T kf, p = S^T qf: one read of S
    const float* Si = S + i * D;
    const float ki = kf[i], qi = qf[i];
    for (int64_t c = 0; c < D; ++c) {
      u[c] += ki * Si[c];
      p[c] += qi * Si[c];
    }
  }
  const float a = st.gated ? GateValue(st, st.alpha, b, h) : 1.0f;
  const float* vv = st.v.at(b, j);
  if (st.delta) {
    const float beta = GateValue(st, st.beta, b, h);
    for (int64_t c = 0; c < D; ++c) d[c] = (vv[c] - a * u[c]) * beta;
  } else {
    std::memcpy(d, vv, sizeof(float) * D);
  }
  const float kq = Dot(kf, qf, D);
  for (int64_t i = 0; i < D; ++i) {  // S <- a S + kf d^T
    float* Si = S + i * D;
    const float ki = kf[i];
    if (st.gated) {
      for (int64_t c = 0; c < D; ++c) Si[c] = a * Si[c] + ki * d[c];
    } else {
      for (int64_t c = 0; c < D; ++c) Si[c] += ki * d[c];
    }
  }
  float* o_l = u;  // u is no longer needed
  for (int64_t c = 0; c < D; ++c) o_l[c] = a * p[c] + d[c] * kq;
  const float ms = Dot(o_l, o_l, D) / static_cast<float>(D);
  const float r = 1.0f / std::sqrt(ms + 1e-6f);
  const float mu = st.mu[h];
  for (int64_t c = 0; c < D; ++c) out[c] = o_s[c] + mu * (o_l[c] * r - o_s[c]);
}

TITAND_INLINE void RunTasks(const Step& st, int64_t begin, int64_t end, float* scratch) {
  for (int64_t t = begin; t < end; ++t) Task(st, t / st.H, t % st.H, scratch);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void RunTasksAvx2(const Step& st, int64_t begin, int64_t end, float* scratch) {
  RunTasks(st, begin, end, scratch);
}
#endif
void RunTasksPortable(const Step& st, int64_t begin, int64_t end, float* scratch) {
  RunTasks(st, begin, end, scratch);
}

bool FloatCpu(const at::Tensor& t) { return !t.defined() || (t.device().is_cpu() && t.scalar_type() == at::kFloat); }

// The kernel reads a learned gate's weights directly when they are contiguous float32 of the right shape.
bool ReadableGate(const at::Tensor& w, const at::Tensor& c, int64_t H, int64_t hidden) {
  return w.defined() && FloatCpu(w) && w.is_contiguous() && w.dim() == 2 && w.size(0) == H && w.size(1) == hidden &&
         (!c.defined() || (FloatCpu(c) && c.is_contiguous() && c.numel() == H));
}

}  // namespace

void UsePortableFusedDecode(bool portable) { use_avx2 = !portable && DetectAvx2(); }

bool FusedDecodeSupported(const std::vector<LayerState*>& states, const at::Tensor& q, const HybridLayer* hybrid) {
  if (!q.device().is_cpu() || q.scalar_type() != at::kFloat || q.dim() != 3 || q.size(2) % 2 != 0) return false;
  for (const LayerState* s : states) {
    if (!FloatCpu(s->k) || !FloatCpu(s->v) || !FloatCpu(s->memory)) return false;
  }
  if (hybrid != nullptr) {
    const HybridParams& p = hybrid->params();
    if (!p.mu.defined() || !FloatCpu(p.mu) || !p.mu.is_contiguous() || p.mu.numel() != q.size(1) ||
        p.num_heads != q.size(1) || p.head_dim != q.size(2)) {
      return false;
    }
  }
  return true;
}

at::Tensor FusedWindowDecodeCpu(const std::vector<LayerState*>& states, const std::vector<int64_t>& positions,
                                const at::Tensor& x, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& cos, const at::Tensor& sin, const SinkWindow& sw,
                                const at::Tensor& inv_freq, double scale, const HybridLayer* hybrid) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3, "FusedWindowDecodeCpu: q, k must be [B, heads, D], got ", q.sizes(), ", ",
              k.sizes());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(1);
  TORCH_CHECK(static_cast<int64_t>(states.size()) == B && static_cast<int64_t>(positions.size()) == B,
              "FusedWindowDecodeCpu: ", states.size(), " states and ", positions.size(), " positions for ", B, " rows");
  TORCH_CHECK(Hkv >= 1 && H % Hkv == 0 && D % 2 == 0, "FusedWindowDecodeCpu: ", H, " query heads, ", Hkv,
              " kv heads, head dim ", D);
  Step st;
  st.H = H;
  st.G = H / Hkv;
  st.D = D;
  st.scale = static_cast<float>(scale);
  st.q = HeadRows(q, B, H, D, "q");
  st.k = HeadRows(k, B, Hkv, D, "k");
  st.v = HeadRows(v, B, Hkv, D, "v");
  const Rows rope_cos = HeadRows(cos.dim() == 2 ? cos.unsqueeze(1) : cos, B, 1, D, "cos");
  const Rows rope_sin = HeadRows(sin.dim() == 2 ? sin.unsqueeze(1) : sin, B, 1, D, "sin");
  TORCH_CHECK(rope_cos.row == rope_sin.row, "FusedWindowDecodeCpu: cos and sin must have one layout");
  st.cos = rope_cos.p;
  st.sin = rope_sin.p;
  st.rope_row = rope_cos.row;
  at::Tensor beta, alpha;
  if (hybrid != nullptr) {
    const HybridParams& p = hybrid->params();
    TORCH_CHECK(p.num_heads == H && p.head_dim == D && p.num_kv_heads == Hkv,
                "FusedWindowDecodeCpu: the hybrid layer has ", p.num_heads, " x ", p.head_dim, " heads, the step ",
                H, " x ", D);
    st.delta = UsesBeta(p.op);
    st.gated = UsesAlpha(p.op);
    st.beta.constant = static_cast<float>(p.const_b);
    st.alpha.constant = static_cast<float>(p.const_a);
    const int64_t hidden = x.size(-1);
    const bool learned_b = st.delta && p.w_b.defined(), learned_a = st.gated && p.w_a.defined();
    auto bias = [](const at::Tensor& c) { return c.defined() ? c.const_data_ptr<float>() : nullptr; };
    if ((!learned_b || ReadableGate(p.w_b, p.c_b, H, hidden)) &&
        (!learned_a || ReadableGate(p.w_a, p.c_a, H, hidden))) {
      if (learned_b || learned_a) {
        st.x = HeadRows(x.unsqueeze(1), B, 1, hidden, "x");
        st.hidden = hidden;
      }
      if (learned_b) st.beta = {p.w_b.const_data_ptr<float>(), bias(p.c_b)};
      if (learned_a) st.alpha = {p.w_a.const_data_ptr<float>(), bias(p.c_a)};
    } else {  // e.g. bfloat16 gate weights: LibTorch computes them
      std::tie(beta, alpha) = hybrid->DecodeGates(x);
      if (st.delta) st.beta.given = GateRows(beta, B, H, "beta");
      if (st.gated) st.alpha.given = GateRows(alpha, B, H, "alpha");
    }
    TORCH_CHECK(FloatCpu(p.mu) && p.mu.is_contiguous() && p.mu.numel() == H,
                "FusedWindowDecodeCpu: mu must be float32 [", H, "] on the CPU (FusedDecodeSupported)");
    st.mu = p.mu.const_data_ptr<float>();  // read in place: no per-step conversion
    st.feature_map = p.feature_map;
  }
  // The sink rotation of each sequence: angles min(t, W + N_s - 1) * inv_freq in fp32, as RopeCosSin.
  std::vector<float> sink_cs;
  if (sw.sinks > 0) {
    TORCH_CHECK(inv_freq.numel() == D / 2 && FloatCpu(inv_freq), "FusedWindowDecodeCpu: inv_freq must be [", D / 2,
                "] float32");
    const at::Tensor f = inv_freq.contiguous();
    const float* fr = f.const_data_ptr<float>();
    sink_cs.resize(2 * B * (D / 2));
    for (int64_t b = 0; b < B; ++b) {
      const float pos = static_cast<float>(std::min(positions[b], sw.window + sw.sinks - 1));
      for (int64_t i = 0; i < D / 2; ++i) {
        const float angle = pos * fr[i];
        sink_cs[b * (D / 2) + i] = std::cos(angle);
        sink_cs[B * (D / 2) + b * (D / 2) + i] = std::sin(angle);
      }
    }
    st.sink_cos = sink_cs.data();
    st.sink_sin = sink_cs.data() + B * (D / 2);
  }
  // Room for each new entry (every state checked before any is written), then the entries written and what
  // each query sees.
  const auto fopt = at::TensorOptions().dtype(at::kFloat);
  std::vector<DecodeEntry> entries(B);
  for (int64_t b = 0; b < B; ++b) entries[b] = PrepareDecodeEntry(*states[b], b, positions[b], sw, Hkv, D, fopt, fopt);
  st.seqs.resize(B);
  int64_t max_seen = 0;
  for (int64_t b = 0; b < B; ++b) {
    LayerState& ls = *states[b];
    const DecodeEntry& e = entries[b];
    TORCH_CHECK(ls.k.stride(2) == 1 && ls.v.stride(2) == 1 && ls.k.size(0) == Hkv && ls.v.size(0) == Hkv,
                "FusedWindowDecodeCpu: sequence ", b, "'s cache must be [", Hkv, ", slots, ", D, "] with unit stride");
    Sequence& s = st.seqs[b];
    float* kc = ls.k.mutable_data_ptr<float>();
    float* vc = ls.v.mutable_data_ptr<float>();
    s.k_head = ls.k.stride(0);
    s.k_slot = ls.k.stride(1);
    s.v_head = ls.v.stride(0);
    s.v_slot = ls.v.stride(1);
    for (int64_t j = 0; j < Hkv; ++j) {  // the new key RoPE'd into its slot, the value copied
      Rope(st.k.at(b, j), st.cos + b * st.rope_row, st.sin + b * st.rope_row, kc + j * s.k_head + e.slot * s.k_slot, D);
      std::memcpy(vc + j * s.v_head + e.slot * s.v_slot, st.v.at(b, j), sizeof(float) * D);
    }
    s.k = kc;
    s.v = vc;
    s.seen = e.seen;
    s.sink_cols = std::min(sw.sinks, e.seen);
    max_seen = std::max(max_seen, e.seen);
    if (hybrid != nullptr) {
      if (!ls.memory.defined()) ls.memory = at::zeros({H, D, D}, fopt);
      TORCH_CHECK(ls.memory.sizes() == at::IntArrayRef({H, D, D}), "FusedWindowDecodeCpu: sequence ", b,
                  "'s memory is ", ls.memory.sizes(), ", expected [", H, ", ", D, ", ", D, "]");
      if (!ls.memory.is_contiguous()) ls.memory = ls.memory.contiguous();
      s.memory = ls.memory.mutable_data_ptr<float>();
    }
  }
  at::Tensor out = at::empty({B, H * D}, fopt);
  st.out = out.mutable_data_ptr<float>();
  const int64_t scratch_len = max_seen + 8 * D;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scratch;
    if (static_cast<int64_t>(scratch.size()) < scratch_len) scratch.resize(scratch_len);
#if defined(__x86_64__)
    if (use_avx2) return RunTasksAvx2(st, begin, end, scratch.data());
#endif
    RunTasksPortable(st, begin, end, scratch.data());
  });
  for (int64_t b = 0; b < B; ++b) AdvanceDecodeEntry(*states[b], sw);
  return out;
}

}  // namespace titand
