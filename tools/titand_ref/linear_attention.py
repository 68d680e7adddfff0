"""Reference TPTT linear-attention memory (REFERENCE.md section 1), plain torch.

Shapes (leading batch dims are allowed before H everywhere):
  q, k  [H, T, d]   already feature-mapped (see feature_map)
  v     [H, T, dv]
  beta  [H, T]      write strength b_t (delta forms)
  alpha [H, T]      decay a_t (gated forms)
  state [H, d, dv]  S, S_0 = 0 when None

Recurrences (per head), output o_t = S_t^T q_t:
  linear       S_t = S_{t-1} + k_t v_t^T
  gated        S_t = a_t S_{t-1} + k_t v_t^T
  delta        S_t = (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T
  gated_delta  S_t = a_t (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T

`linear_attention_recurrent` is the spec (float64, one token at a time, explicit matrices).
`linear_attention_chunked` is the differentiable chunked (WY) form for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPERATORS = ("linear", "gated", "delta", "gated_delta")
FEATURE_MAPS = ("tptt", "elu", "identity")


def _uses_beta(op: str) -> bool:
    return op in ("delta", "gated_delta")


def _uses_alpha(op: str) -> bool:
    return op in ("gated", "gated_delta")


def _check_op(op: str) -> None:
    if op not in OPERATORS:
        raise ValueError(f"unknown linear operator {op!r}; expected one of {OPERATORS}")


def feature_map(name: str, x: torch.Tensor) -> torch.Tensor:
    """phi over the last dim; computed in x's dtype.

    tptt: SiLU(x) / max(||SiLU(x)||_2, 1e-6); elu: elu(x) + 1; identity: x / max(||x||_2, 1e-6).
    """
    if name == "tptt":
        y = F.silu(x)
        return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True).clamp_min(1e-6)
    if name == "elu":
        return F.elu(x) + 1.0
    if name == "identity":
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-6)
    raise ValueError(f"unknown feature map {name!r}; expected one of {FEATURE_MAPS}")


def linear_attention_recurrent(op, q, k, v, beta=None, alpha=None, state=None):
    """Per-token recurrence in float64. Returns (o float32 [..., H, T, dv], final state float32)."""
    _check_op(op)
    q64, k64, v64 = q.double(), k.double(), v.double()
    *lead, t_len, d = q64.shape
    dv = v64.shape[-1]
    if state is None:
        s = torch.zeros(*lead, d, dv, dtype=torch.float64, device=q.device)
    else:
        s = state.double().clone()
    b = beta.double() if _uses_beta(op) else None
    a = alpha.double() if _uses_alpha(op) else None
    eye = torch.eye(d, dtype=torch.float64, device=q.device)
    outs = []
    for t in range(t_len):
        kt = k64[..., t, :].unsqueeze(-1)  # [..., d, 1]
        vt = v64[..., t, :].unsqueeze(-2)  # [..., 1, dv]
        write = kt @ vt  # k v^T
        if op == "linear":
            s = s + write
        elif op == "gated":
            s = a[..., t, None, None] * s + write
        else:
            bt = b[..., t, None, None]
            transition = eye - bt * (kt @ kt.transpose(-1, -2))  # I - b k k^T
            if op == "gated_delta":
                transition = a[..., t, None, None] * transition
            s = transition @ s + bt * write
        outs.append((s.transpose(-1, -2) @ q64[..., t, :].unsqueeze(-1)).squeeze(-1))
    if outs:
        o = torch.stack(outs, dim=-2)
    else:
        o = torch.zeros(*lead, 0, dv, dtype=torch.float64, device=q.device)
    return o.float(), s.float()


def _pad_time(x: torch.Tensor, pad: int, time_dim: int, value: float = 0.0) -> torch.Tensor:
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[time_dim] = pad
    return torch.cat([x, x.new_full(shape, value)], dim=time_dim)


def linear_attention_chunked(op, q, k, v, beta=None, alpha=None, state=None, chunk_size=64):
    """Chunked (WY) form, differentiable. Same shapes and result as the recurrence.

    Math in float32 (float64 if q is float64). Returns (o [..., H, T, dv] in v's dtype, final state
    [..., H, d, dv] float32/float64). Per chunk of C rows with start state S0, in-chunk cumulative
    log-decay g_t, Gamma[t, s] = exp(g_t - g_s) for s <= t (0 above), G_t = exp(g_t):
      delta forms: A = strict_lower(diag(b) (K K^T * Gamma)); U = (I + A)^-1 diag(b) V;
                   W = (I + A)^-1 diag(b) diag(G) K;  D = U - W S0
      otherwise:   D = V
      O = diag(G) Q S0 + (lower_incl(Q K^T) * Gamma) D;  S_end = G_C S0 + K^T diag(G_C / G) D
    """
    _check_op(op)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    qf, kf, vf = q.to(cdtype), k.to(cdtype), v.to(cdtype)
    *lead, t_len, d = qf.shape
    dv = vf.shape[-1]
    s = (torch.zeros(*lead, d, dv, dtype=cdtype, device=q.device) if state is None
         else state.to(cdtype))
    if t_len == 0:
        return vf.to(v.dtype), s
    c = min(chunk_size, t_len)
    nc = -(-t_len // c)
    pad = nc * c - t_len
    # Padded rows: k = v = 0, b = 0, a = 1 (log 0) -> no effect on outputs or state.
    qc = _pad_time(qf, pad, -2).reshape(*lead, nc, c, d)
    kc = _pad_time(kf, pad, -2).reshape(*lead, nc, c, d)
    vc = _pad_time(vf, pad, -2).reshape(*lead, nc, c, dv)
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    gated = _uses_alpha(op)
    if gated:
        la = torch.log(alpha.to(torch.float64)).clamp_min(-1e4)
        g = _pad_time(la, pad, -1).reshape(*lead, nc, c).cumsum(-1)  # [..., nc, C]
        diff = (g.unsqueeze(-1) - g.unsqueeze(-2)).masked_fill(~causal, float("-inf"))
        gamma = diff.exp().to(cdtype)  # [..., nc, C, C]
        g_first = g.exp().to(cdtype)  # G_t
        g_last = (g[..., -1:] - g).exp().to(cdtype)  # G_C / G_s
        g_end = g[..., -1].exp().to(cdtype)  # [..., nc]
    else:
        gamma = causal.to(cdtype)
    p = (qc @ kc.transpose(-1, -2)) * gamma
    q_s0 = qc * g_first.unsqueeze(-1) if gated else qc
    k_tail = (kc * g_last.unsqueeze(-1) if gated else kc).transpose(-1, -2)  # [..., nc, d, C]
    delta = _uses_beta(op)
    if delta:
        b = _pad_time(beta.to(cdtype), pad, -1).reshape(*lead, nc, c, 1)
        a_mat = ((kc @ kc.transpose(-1, -2)) * gamma).tril(-1) * b
        eye = torch.eye(c, dtype=cdtype, device=q.device)
        k_scaled = kc * g_first.unsqueeze(-1) if gated else kc
        rhs = torch.cat([vc, k_scaled], dim=-1) * b
        x = torch.linalg.solve_triangular(eye + a_mat, rhs, upper=False, unitriangular=True)
        u, w = x[..., :dv], x[..., dv:]
    outs = []
    for j in range(nc):
        dmat = u[..., j, :, :] - w[..., j, :, :] @ s if delta else vc[..., j, :, :]
        outs.append(q_s0[..., j, :, :] @ s + p[..., j, :, :] @ dmat)
        if gated:
            s = g_end[..., j, None, None] * s
        s = s + k_tail[..., j, :, :] @ dmat
    o = torch.cat(outs, dim=-2)[..., :t_len, :]
    return o.to(v.dtype), s
