#include "core/model/linear_attention.h"

#include <c10/util/Exception.h>

#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/batch_rows.h"

namespace titand {

absl::StatusOr<LinearOperator> ParseLinearOperator(std::string_view name) {
  if (name == "linear") return LinearOperator::kLinear;
  if (name == "gated") return LinearOperator::kGated;
  if (name == "delta") return LinearOperator::kDelta;
  if (name == "gated_delta") return LinearOperator::kGatedDelta;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown linear operator '", std::string(name), "' (expected linear, gated, delta or gated_delta)"));
}

std::string ToString(LinearOperator op) {
  switch (op) {
    case LinearOperator::kLinear: return "linear";
    case LinearOperator::kGated: return "gated";
    case LinearOperator::kDelta: return "delta";
    case LinearOperator::kGatedDelta: return "gated_delta";
  }
  return "unknown";
}

bool UsesBeta(LinearOperator op) {
  return op == LinearOperator::kDelta || op == LinearOperator::kGatedDelta;
}
bool UsesAlpha(LinearOperator op) {
  return op == LinearOperator::kGated || op == LinearOperator::kGatedDelta;
}

namespace {

// log a_t is clamped from below so that a_t = 0 still gives finite cumulative sums (exp(-1e4) = 0).
constexpr double kMinLogDecay = -1e4;

// Inputs flattened to N independent heads: q, k [N, T, d], v [N, T, dv], beta/alpha [N, T].
struct Flat {
  at::Tensor q, k, v, beta, alpha;  // fp32
  int64_t n = 0, t = 0, d = 0, dv = 0;
};

// Checks shapes for `lead` leading dims ([H] or [B, H]) and flattens them to N, casting to fp32.
Flat Flatten(LinearOperator op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
             const at::Tensor& beta, const at::Tensor& alpha, const at::Tensor& state,
             int64_t lead) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined(), "q, k, v must be defined");
  TORCH_CHECK(q.dim() == lead + 2 && k.dim() == lead + 2 && v.dim() == lead + 2,
              "q, k, v must have ", lead + 2, " dims");
  TORCH_CHECK(q.sizes() == k.sizes(), "q and k shapes differ: ", q.sizes(), " vs ", k.sizes());
  TORCH_CHECK(v.sizes().slice(0, lead + 1) == q.sizes().slice(0, lead + 1),
              "v leading dims differ from q: ", v.sizes(), " vs ", q.sizes());
  TORCH_CHECK(state.defined() && state.scalar_type() == at::kFloat, "state must be fp32");
  const auto lead_sizes = q.sizes().slice(0, lead);
  std::vector<int64_t> want_state(lead_sizes.begin(), lead_sizes.end());
  want_state.push_back(q.size(-1));
  want_state.push_back(v.size(-1));
  TORCH_CHECK(state.sizes() == at::IntArrayRef(want_state), "state shape ", state.sizes(),
              " expected ", at::IntArrayRef(want_state));
  const auto scalar_sizes = q.sizes().slice(0, lead + 1);
  if (UsesBeta(op)) {
    TORCH_CHECK(beta.defined() && beta.sizes() == scalar_sizes, "beta must have shape ",
                scalar_sizes);
  }
  if (UsesAlpha(op)) {
    TORCH_CHECK(alpha.defined() && alpha.sizes() == scalar_sizes, "alpha must have shape ",
                scalar_sizes);
  }
  Flat f;
  f.t = q.size(-2);
  f.d = q.size(-1);
  f.dv = v.size(-1);
  f.n = 1;
  for (int64_t s : lead_sizes) f.n *= s;
  f.q = q.to(at::kFloat).reshape({f.n, f.t, f.d});
  f.k = k.to(at::kFloat).reshape({f.n, f.t, f.d});
  f.v = v.to(at::kFloat).reshape({f.n, f.t, f.dv});
  if (UsesBeta(op)) f.beta = beta.to(at::kFloat).reshape({f.n, f.t});
  if (UsesAlpha(op)) f.alpha = alpha.to(at::kFloat).reshape({f.n, f.t});
  return f;
}

// A contiguous [N, d, dv] working view of `state` (shares storage when possible).
at::Tensor WorkState(const at::Tensor& state, const Flat& f) {
  if (state.is_contiguous()) return state.view({f.n, f.d, f.dv});
  return state.contiguous().view({f.n, f.d, f.dv});
}

// Writes the working state back when it was a copy.
void CommitState(at::Tensor& state, const at::Tensor& work) {
  if (work.data_ptr() != state.data_ptr()) {
    state.copy_(work.view(state.sizes()));
  }
}

// Per-token recurrence over flattened inputs; updates S [N, d, dv] in place, returns o [N, T, dv] fp32.
// With d_t = b_t (v_t - a_t S_{t-1}^T k_t) (delta forms) or d_t = v_t (others):
//   S_t = a_t S_{t-1} + k_t d_t^T,   o_t = S_t^T q_t.
at::Tensor RecurrentFlat(LinearOperator op, const Flat& f, at::Tensor& s) {
  const bool delta = UsesBeta(op);
  const bool gated = UsesAlpha(op);
  if (f.t == 1) {  // decode: no per-token slicing
    at::Tensor k_col = f.k.transpose(1, 2);                  // [N, d, 1]
    at::Tensor d = f.v;                                        // [N, 1, dv]
    at::Tensor a = gated ? f.alpha.view({f.n, 1, 1}) : at::Tensor();
    if (delta) {
      at::Tensor u = at::bmm(f.k, s);                          // S^T k: [N, 1, dv]
      if (gated) u = u * a;
      d = (f.v - u) * f.beta.view({f.n, 1, 1});
    }
    if (gated) s.mul_(a);
    s.baddbmm_(k_col, d);
    return at::bmm(f.q, s);                                    // [N, 1, dv]
  }
  std::vector<at::Tensor> outs;
  outs.reserve(f.t);
  for (int64_t t = 0; t < f.t; ++t) {
    at::Tensor k_row = f.k.narrow(1, t, 1);                  // [N, 1, d]
    at::Tensor d = f.v.narrow(1, t, 1);                      // [N, 1, dv]
    at::Tensor a = gated ? f.alpha.narrow(1, t, 1).unsqueeze(-1) : at::Tensor();  // [N, 1, 1]
    if (delta) {
      at::Tensor u = at::bmm(k_row, s);
      if (gated) u = u * a;
      d = (d - u) * f.beta.narrow(1, t, 1).unsqueeze(-1);
    }
    if (gated) s.mul_(a);
    s.baddbmm_(k_row.transpose(1, 2), d);
    outs.push_back(at::bmm(f.q.narrow(1, t, 1), s));
  }
  return at::cat(outs, 1);
}

// Pads dim 1 of x ([N, T, ...]) with `pad` trailing entries of `value`.
at::Tensor PadTime(const at::Tensor& x, int64_t pad, double value) {
  if (pad == 0) return x.contiguous();  // callers view() the result: inputs may be transposed views
  std::vector<int64_t> p(2 * (x.dim() - 1), 0);
  p.back() = pad;  // constant_pad_nd lists pads from the last dim backwards
  return at::constant_pad_nd(x, p, value);
}

}  // namespace

at::Tensor LinearAttentionRecurrent(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, const at::Tensor& beta,
                                    const at::Tensor& alpha, at::Tensor& state) {
  Flat f = Flatten(op, q, k, v, beta, alpha, state, /*lead=*/1);
  at::Tensor s = WorkState(state, f);
  at::Tensor o = RecurrentFlat(op, f, s);
  CommitState(state, s);
  return o.to(v.scalar_type());
}

at::Tensor LinearAttentionDecodeStep(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& beta, const at::Tensor& alpha,
                                     const std::vector<at::Tensor*>& states) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.dim() == 3 && v.size(0) == q.size(0) &&
                  v.size(1) == q.size(1),
              "decode step: q, k [B, H, d] and v [B, H, dv] expected, got ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  const int64_t B = q.size(0), H = q.size(1), d = q.size(2), dv = v.size(2);
  TORCH_CHECK(static_cast<int64_t>(states.size()) == B, "decode step: ", states.size(), " states for ", B, " rows");
  const bool delta = UsesBeta(op), gated = UsesAlpha(op);
  TORCH_CHECK(!delta || (beta.defined() && beta.sizes() == q.sizes().slice(0, 2)), "beta must be [B, H]");
  TORCH_CHECK(!gated || (alpha.defined() && alpha.sizes() == q.sizes().slice(0, 2)), "alpha must be [B, H]");
  for (const at::Tensor* s : states) {
    TORCH_CHECK(s != nullptr && s->defined() && s->scalar_type() == at::kFloat &&
                    s->sizes() == at::IntArrayRef({H, d, dv}),
                "decode step: every state must be fp32 [", H, ", ", d, ", ", dv, "]");
  }
  const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat), vf = v.to(at::kFloat);
  const at::Tensor kq = at::stack({kf, qf}, 2);  // [B, H, 2, d]
  // The states as rows of one block [N, H, d, dv] (no copy when they already are: the previous step's
  // batch or the model's decode slots). Rows of the block that are not in this batch are read and written
  // with k = 0, a = 1 (exact no-ops); their results are dropped.
  const BatchBlock bb = BatchRows(states);
  const at::Tensor& S = bb.block;
  const int64_t N = S.size(0);
  const at::Tensor rows = bb.identity ? at::Tensor() : bb.rows_tensor(q.device());
  auto scatter = [&](const at::Tensor& t, double fill) {  // [B, ...] -> [N, ...]
    if (bb.identity) return t;
    std::vector<int64_t> shape = t.sizes().vec();
    shape[0] = N;
    return at::full(shape, fill, t.options()).index_copy_(0, rows, t);
  };
  auto gather = [&](const at::Tensor& t) { return bb.identity ? t : t.index_select(0, rows); };
  const at::Tensor up = gather(at::matmul(scatter(kq, 0.0), S));  // [B, H, 2, dv]: k^T S, q^T S, one read of S
  const at::Tensor u = up.select(2, 0), p = up.select(2, 1);
  const at::Tensor a = gated ? alpha.to(at::kFloat).unsqueeze(-1) : at::Tensor();     // [B, H, 1]
  at::Tensor dd = vf;                                                                  // [B, H, dv]
  if (delta) dd = (vf - (gated ? a * u : u)) * beta.to(at::kFloat).unsqueeze(-1);
  const at::Tensor kdotq = (kf * qf).sum(-1, /*keepdim=*/true);                        // [B, H, 1]
  at::Tensor o = (gated ? a * p : p) + dd * kdotq;
  // S <- a S + k dd^T, in place for the whole block.
  if (gated) S.mul_(scatter(a, 1.0).unsqueeze(-1));
  S.addcmul_(scatter(kf, 0.0).unsqueeze(-1), scatter(dd, 0.0).unsqueeze(-2));  // [N, H, d, 1] x [N, H, 1, dv]
  return o.to(v.scalar_type());
}

at::Tensor LinearAttentionChunked(LinearOperator op, const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, const at::Tensor& beta,
                                  const at::Tensor& alpha, at::Tensor& state, int64_t chunk_size) {
  TORCH_CHECK(chunk_size >= 1, "chunk_size must be >= 1, got ", chunk_size);
  Flat f = Flatten(op, q, k, v, beta, alpha, state, /*lead=*/1);
  at::Tensor s = WorkState(state, f);
  if (f.t == 0) return at::empty({f.n, 0, f.dv}, v.options());
  const bool delta = UsesBeta(op);
  const bool gated = UsesAlpha(op);
  const int64_t n = f.n, d = f.d, dv = f.dv;
  const int64_t c = std::min(chunk_size, f.t);  // a chunk longer than T changes nothing
  const int64_t nc = (f.t + c - 1) / c;
  const int64_t pad = nc * c - f.t;
  const int64_t m = n * nc;  // chunks of all heads, batched: [M, C, ...]
  // Padded rows (k = v = 0, b = 0, a = 1) leave the state and the real outputs untouched.
  const at::Tensor qc = PadTime(f.q, pad, 0.0).view({m, c, d});
  const at::Tensor kc = PadTime(f.k, pad, 0.0).view({m, c, d});
  const at::Tensor vc = PadTime(f.v, pad, 0.0).view({m, c, dv});
  const auto opts = f.q.options();

  // Decays: g_t = sum_{s<=t in chunk} log a_s (fp64 for exact differences);
  // gamma[t,s] = exp(g_t - g_s) on s <= t, 0 above; g_first[t] = exp(g_t); g_last[s] = exp(g_C - g_s).
  at::Tensor causal = at::ones({c, c}, opts.dtype(at::kBool)).tril();  // [C, C], s <= t
  at::Tensor gamma, g_first, g_last, g_end;
  if (gated) {
    at::Tensor la = PadTime(f.alpha.to(at::kDouble).log().clamp_min(kMinLogDecay), pad, 0.0);
    at::Tensor g = la.view({m, c}).cumsum(-1);                          // [M, C]
    at::Tensor diff = g.unsqueeze(2) - g.unsqueeze(1);                  // [M, C, C]: g_t - g_s
    diff = diff.masked_fill(causal.logical_not(), -std::numeric_limits<double>::infinity());
    gamma = diff.exp().to(at::kFloat);
    g_first = g.exp().to(at::kFloat);                                   // [M, C]
    at::Tensor g_c = g.narrow(1, c - 1, 1);                             // [M, 1]
    g_last = (g_c - g).exp().to(at::kFloat);                            // [M, C]
    g_end = g_c.exp().to(at::kFloat).view({n, nc, 1, 1});
  } else {
    gamma = causal.to(at::kFloat);
  }

  // Intra-chunk terms, all chunks at once.
  at::Tensor p = at::bmm(qc, kc.transpose(1, 2)) * gamma;              // [M, C, C] lower incl diag
  at::Tensor q_s0 = gated ? qc * g_first.unsqueeze(-1) : qc;           // diag(G) Q
  at::Tensor k_tail = gated ? kc * g_last.unsqueeze(-1) : kc;          // diag(G_C / G) K
  at::Tensor u, w;
  if (delta) {
    at::Tensor b = PadTime(f.beta, pad, 0.0).view({m, c, 1});
    // (I + A) X = diag(b) [V, diag(G) K],  A = strict_lower(diag(b) (K K^T * gamma)).
    at::Tensor a_mat = (at::bmm(kc, kc.transpose(1, 2)) * gamma).tril(-1) * b;
    at::Tensor eye = at::eye(c, opts).expand({m, c, c});
    at::Tensor k_scaled = gated ? kc * g_first.unsqueeze(-1) : kc;
    at::Tensor rhs = at::cat({vc, k_scaled}, -1) * b;                   // [M, C, dv + d]
    at::Tensor x = at::linalg_solve_triangular(eye + a_mat, rhs, /*upper=*/false, /*left=*/true,
                                               /*unitriangular=*/true);
    u = x.narrow(-1, 0, dv).reshape({n, nc, c, dv});
    w = x.narrow(-1, dv, d).reshape({n, nc, c, d});
  }
  at::Tensor p4 = p.view({n, nc, c, c});
  at::Tensor q4 = q_s0.view({n, nc, c, d});
  at::Tensor kt4 = k_tail.transpose(1, 2).reshape({n, nc, d, c});         // K^T diag(G_C / G)
  at::Tensor v4 = vc.view({n, nc, c, dv});

  // Inter-chunk recurrence on the full d x dv state.
  std::vector<at::Tensor> outs;
  outs.reserve(nc);
  for (int64_t j = 0; j < nc; ++j) {
    at::Tensor dmat = delta ? u.select(1, j) - at::bmm(w.select(1, j), s) : v4.select(1, j);
    at::Tensor o = at::bmm(q4.select(1, j), s);                          // diag(G) Q S0
    o.baddbmm_(p4.select(1, j), dmat);                                   // + (QK^T * gamma) D
    outs.push_back(o);
    if (gated) s.mul_(g_end.select(1, j));
    s.baddbmm_(kt4.select(1, j), dmat);
  }
  CommitState(state, s);
  at::Tensor o = at::cat(outs, 1);
  if (pad > 0) o = o.narrow(1, 0, f.t);
  return o.to(v.scalar_type());
}

}  // namespace titand
