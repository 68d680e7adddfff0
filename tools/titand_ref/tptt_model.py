"""TPTT hybrid attention over a Hugging Face Llama-family causal LM (Python reference).

Math contract: /work/shared/REFERENCE.md section 1. Per converted layer i, head h, position t:

  q, k, v      = (LoRA-merged) projections of x_t, x_t = hidden state after input_layernorm   [B, H|Hkv, T, d]
  o_s          = softmax(q_rope k_rope^T * scaling + band mask) v over keys j in [t-W+1, t]      [B, H, T, d]
                 plus the first N_s tokens ("sinks") once they left the window, sink i scored at RoPE distance
                 min(t, W + N_s - 1) - i (StreamingLLM's rule: just before the window once a gap opens)
  o_l          = S_t^T phi(q_t),  S from the operator recurrence on phi(q), phi(k) BEFORE RoPE   [B, H, T, d]
                 (k/v heads repeated to the q heads), then o_l / sqrt(mean(o_l^2) + 1e-6)
  o            = (1 - mu_h) o_s + mu_h o_l, heads concatenated, then o_proj                     [B, T, hidden]

mu is stored as a logit parameter `mu_logit` [H] (mu = sigmoid(mu_logit)); mu = 0 / 1 map to -inf / +inf
so that exact values survive. Write strength b and decay a are sigmoid(x_t . w[h] + c[h]) ("learned") or
constants. Plain (unconverted) layers run the model's own full causal attention.

The whole forward is done here (embeddings, decoder layers, final norm, lm_head re-used from the HF model)
so that the per-sequence state can be carried: per converted layer the last W post-RoPE keys/values, the
sinks that left them (post-RoPE at their own positions 0..N_s-1) + S [B, H, d, d] (fp32); per plain layer all keys/values. forward(A) then forward(B, state) == forward(A+B).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from titand_ref import linear_attention as la

OPERATORS = ("linear", "gated", "delta", "gated_delta")
FEATURE_MAPS = ("tptt", "elu", "identity")
GATE_KINDS = ("learned", "constant")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MODES = ("recurrent", "chunked")
RMS_EPS = 1e-6


@dataclass
class LoraSpec:
    r: int = 8
    alpha: float = 16.0
    targets: tuple = LORA_TARGETS
    dropout: float = 0.0
    layers: list | None = None  # None: every decoder layer

    @property
    def scale(self) -> float:
        return self.alpha / self.r


@dataclass
class TPTTConfig:
    operator: str = "gated_delta"
    feature_map: str = "tptt"
    window: int | None = 64
    sinks: int = 0          # attention sinks N_s of the softmax branch (needs a window)
    gates: str = "learned"
    constants: dict = field(default_factory=lambda: {"b": 0.5, "a": 0.99})
    layers: list = field(default_factory=list)
    mu_init: float = 0.1
    lora: LoraSpec | None = None

    def validate(self, n_layers: int) -> None:
        """Raises ValueError naming the offending field."""
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r}; expected one of {OPERATORS}")
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"unknown feature_map {self.feature_map!r}; expected one of {FEATURE_MAPS}")
        if self.gates not in GATE_KINDS:
            raise ValueError(f"unknown gates {self.gates!r}; expected one of {GATE_KINDS}")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"window must be null or an integer >= 1, got {self.window!r}")
        if not isinstance(self.sinks, int) or isinstance(self.sinks, bool) or self.sinks < 0:
            raise ValueError(f"sinks must be an integer >= 0, got {self.sinks!r}")
        if self.sinks > 0 and self.window is None:
            raise ValueError("sinks > 0 needs a window (window is null)")
        if self.gates == "constant":
            for key in ("b", "a"):
                val = self.constants.get(key)
                if not isinstance(val, (int, float)) or not 0.0 <= float(val) <= 1.0:
                    raise ValueError(f"constants.{key} must be a number in [0, 1], got {val!r}")
        bad = [i for i in self.layers if not isinstance(i, int) or not 0 <= i < n_layers]
        if bad or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must be distinct indices in [0, {n_layers}), got {self.layers}")
        if not 0.0 <= self.mu_init <= 1.0:
            raise ValueError(f"mu_init must be in [0, 1], got {self.mu_init}")
        if self.lora is not None:
            if self.lora.r < 1:
                raise ValueError(f"lora.r must be >= 1, got {self.lora.r}")
            unknown = set(self.lora.targets) - set(LORA_TARGETS)
            if unknown:
                raise ValueError(f"unknown lora targets {sorted(unknown)}; expected a subset of {LORA_TARGETS}")


@dataclass
class LayerState:
    """Carried state of one decoder layer for a batch of B sequences."""
    k: torch.Tensor | None = None  # [B, Hkv, L, d] post-RoPE keys (converted: last <= W; plain: all)
    v: torch.Tensor | None = None  # [B, Hkv, L, d]
    S: torch.Tensor | None = None  # [B, H, d, d] fp32 linear-attention state (converted layers only)
    sk: torch.Tensor | None = None  # [B, Hkv, n_s, d] sinks that left the window (post-RoPE at 0..n_s-1)
    sv: torch.Tensor | None = None  # [B, Hkv, n_s, d]


@dataclass
class ModelState:
    pos: int = 0                                 # tokens consumed so far (next position id)
    layers: list = field(default_factory=list)   # LayerState per decoder layer

    def clone(self) -> "ModelState":
        c = lambda t: None if t is None else t.clone()
        return ModelState(self.pos, [LayerState(c(s.k), c(s.v), c(s.S), c(s.sk), c(s.sv)) for s in self.layers])


class LoRADelta(nn.Module):
    """delta(x) = (alpha / r) * B A dropout(x); A [r, in], B [out, r] (B zero-initialised, PEFT-style A).
    The projection becomes base(x) + delta(x) = (W + (alpha / r) B A) x: the merged weight."""

    def __init__(self, fan_in: int, fan_out: int, r: int, alpha: float, dropout: float):
        super().__init__()
        self.scale = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, fan_in))
        self.lora_B = nn.Parameter(torch.zeros(fan_out, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)


class HybridParams(nn.Module):
    """New weights of one converted layer: mu logit [H]; gates w_b, w_a [H, hidden], c_b, c_a [H]."""

    def __init__(self, n_heads: int, hidden: int, cfg: TPTTConfig):
        super().__init__()
        self.mu_logit = nn.Parameter(torch.full((n_heads,), _logit(cfg.mu_init)))
        if cfg.gates == "learned":
            self.w_b = nn.Parameter(torch.zeros(n_heads, hidden))
            self.c_b = nn.Parameter(torch.zeros(n_heads))                      # b = 0.5 at init
            self.w_a = nn.Parameter(torch.zeros(n_heads, hidden))
            self.c_a = nn.Parameter(torch.full((n_heads,), _logit(0.99)))      # a = 0.99 at init

    def mu(self) -> torch.Tensor:
        return torch.sigmoid(self.mu_logit)


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _repeat_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, T, d] -> [B, Hkv * n_rep, T, d], head j of the result uses kv head j // n_rep."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def _rotate(q, k, cos, sin):
    """RoPE (HF half-rotation layout). q, k [B, *, T, d]; cos, sin [B, T, d]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot = lambda x: torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)
    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def banded_softmax_attention(q, k, v, q_pos, k_pos, window, scaling, n_rep, sinks=0, q_sink=None):
    """o_s. q [B, H, T, d]; k, v [B, Hkv, L, d]; q_pos [T], k_pos [L] increasing absolute positions.
    Query at p attends keys at p' with p - W < p' <= p (W None: p' <= p), and with sinks > 0 also keys
    p' < sinks; those are scored against q_sink [B, H, T, d] (the query rotated for min(p, W + sinks - 1))."""
    k, v = _repeat_heads(k, n_rep), _repeat_heads(v, n_rep)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling               # [B, H, T, L]
    diff = q_pos[:, None] - k_pos[None, :]
    allowed = diff >= 0
    if window is not None:
        allowed &= diff < window
    if sinks > 0:
        n = int((k_pos < sinks).sum())  # sink columns come first (positions increase)
        sink_scores = torch.matmul(q_sink, k[:, :, :n].transpose(-1, -2)) * scaling
        scores = torch.cat([sink_scores, scores[..., n:]], dim=-1)
        allowed |= (diff >= 0) & (k_pos[None, :] < sinks)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype), v)


class TPTTModel(nn.Module):
    """A HF Llama-family CausalLM with the layers in cfg.layers converted to TPTT hybrids."""

    def __init__(self, base: nn.Module, cfg: TPTTConfig):
        super().__init__()
        hc = base.config
        cfg.validate(hc.num_hidden_layers)
        self.base, self.cfg = base, cfg
        for p in base.parameters():
            p.requires_grad_(False)
        self.n_heads, self.n_kv = hc.num_attention_heads, hc.num_key_value_heads
        self.head_dim = getattr(hc, "head_dim", None) or hc.hidden_size // hc.num_attention_heads
        self.hidden = hc.hidden_size
        self.n_layers = hc.num_hidden_layers
        self.hybrid = nn.ModuleDict({str(i): HybridParams(self.n_heads, self.hidden, cfg) for i in cfg.layers})
        self.lora = None
        if cfg.lora is not None:
            self._add_lora(cfg.lora)

    # ----- weights -------------------------------------------------------------------------------------
    def _add_lora(self, spec: LoraSpec) -> None:
        """LoRA deltas live here (keyed "i_q_proj"); the HF base model itself is never modified."""
        self.lora = nn.ModuleDict()
        for i in (spec.layers if spec.layers is not None else range(self.n_layers)):
            attn = self.base.model.layers[i].self_attn
            for name in spec.targets:
                lin = getattr(attn, name)
                self.lora[f"{i}_{name}"] = LoRADelta(lin.in_features, lin.out_features, spec.r, spec.alpha,
                                                     spec.dropout)

    def lora_modules(self):
        """Yields (layer, target, LoRADelta) in layer order."""
        for key, mod in (self.lora.items() if self.lora is not None else []):
            i, name = key.split("_", 1)
            yield int(i), name, mod

    def _proj(self, i: int, name: str, x: torch.Tensor, use_lora: bool = True) -> torch.Tensor:
        y = getattr(self.base.model.layers[i].self_attn, name)(x)
        key = f"{i}_{name}"
        if use_lora and self.lora is not None and key in self.lora:
            y = y + self.lora[key](x)
        return y

    def new_parameters(self, include_mu: bool = True, include_lora: bool = True):
        ps = []
        for hp in self.hybrid.values():
            ps += [p for n, p in hp.named_parameters() if include_mu or n != "mu_logit"]
        if include_lora:
            for _, _, mod in self.lora_modules():
                ps += [mod.lora_A, mod.lora_B]
        return ps

    def set_mu(self, value) -> None:
        """Sets mu of every converted layer: a number, or a dict {layer: [H] values}."""
        with torch.no_grad():
            for key, hp in self.hybrid.items():
                v = value[int(key)] if isinstance(value, dict) else value
                mu = torch.as_tensor(v, dtype=torch.float32).expand(self.n_heads)
                hp.mu_logit.copy_(torch.logit(mu.clamp(0.0, 1.0)))

    def mu_values(self) -> dict:
        return {int(k): hp.mu().detach().clone() for k, hp in self.hybrid.items()}

    # ----- forward ---------------------------------------------------------------------------------------
    def new_state(self) -> ModelState:
        return ModelState(0, [LayerState() for _ in range(self.n_layers)])

    def forward(self, input_ids: torch.Tensor, state: ModelState | None = None, mode: str = "chunked",
                chunk_size: int = 64, window="config", plain: bool = False, capture=None, head: bool = True):
        """input_ids [B, T] -> (logits [B, T, V], new state). The input state is not modified.

        mode "recurrent": token by token with carried state (the slow spec, linear branch per token);
        mode "chunked": the whole block at once, chunked linear operator (differentiable, for training).
        window: override of cfg.window ("config" keeps it). plain=True: every layer is the original full
        causal attention without LoRA (the base model; the attention-transfer teacher). capture(i, x, attn_out)
        is called per layer with the attention input and output. head=False returns the final hidden states
        [B, T, hidden] (after the final norm) instead of logits.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        state = self.new_state() if state is None else state
        if mode == "recurrent":
            outs = []
            for t in range(input_ids.shape[1]):
                lg, state = self._block(input_ids[:, t:t + 1], state, mode, chunk_size, window, plain, capture,
                                        head)
                outs.append(lg)
            return torch.cat(outs, dim=1), state
        return self._block(input_ids, state, mode, chunk_size, window, plain, capture, head)

    def _block(self, ids, state, mode, chunk_size, window, plain, capture, head=True):
        m = self.base.model
        B, T = ids.shape
        h = m.embed_tokens(ids)
        pos = torch.arange(state.pos, state.pos + T, device=ids.device)
        cos, sin = m.rotary_emb(h, pos.unsqueeze(0).expand(B, T))
        new_layers = []
        for i, layer in enumerate(m.layers):
            x = layer.input_layernorm(h)
            a, st = self.attention(i, x, cos, sin, pos, state.layers[i], mode, chunk_size, window, plain)
            if capture is not None:
                capture(i, x, a)
            new_layers.append(st)
            h = h + a
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = m.norm(h)
        logits = self.base.lm_head(h) if head else h
        return logits, ModelState(state.pos + T, new_layers)

    def attention(self, i, x, cos, sin, pos, st: LayerState, mode="chunked", chunk_size=64,
                  window="config", plain=False):
        """Attention sub-block of layer i. x [B, T, hidden] -> (out [B, T, hidden], new LayerState)."""
        attn = self.base.model.layers[i].self_attn
        B, T, _ = x.shape
        d, H, Hkv = self.head_dim, self.n_heads, self.n_kv
        q = self._proj(i, "q_proj", x, not plain).view(B, T, H, d).transpose(1, 2)    # [B, H, T, d] (before RoPE)
        k = self._proj(i, "k_proj", x, not plain).view(B, T, Hkv, d).transpose(1, 2)  # [B, Hkv, T, d]
        v = self._proj(i, "v_proj", x, not plain).view(B, T, Hkv, d).transpose(1, 2)
        qr, kr = _rotate(q, k, cos, sin)
        converted = (not plain) and str(i) in self.hybrid
        W = (self.cfg.window if window == "config" else window) if converted else None
        k_all = kr if st.k is None else torch.cat([st.k, kr], dim=2)
        v_all = v if st.v is None else torch.cat([st.v, v], dim=2)
        end = int(pos[-1]) + 1
        k_pos = torch.arange(end - k_all.shape[2], end, device=x.device)
        Ns = self.cfg.sinks if (converted and W is not None) else 0
        if Ns > 0:
            return self._attention_with_sinks(i, x, q, k, v, qr, k_all, v_all, k_pos, pos, st, W, Ns, mode,
                                              chunk_size)
        o = banded_softmax_attention(qr, k_all, v_all, pos, k_pos, W, attn.scaling, H // Hkv)
        S = None
        if converted:
            hp = self.hybrid[str(i)]
            o_l, S = self._linear_branch(hp, x, q, k, v, st.S, mode, chunk_size)
            mu = hp.mu().view(1, H, 1, 1)
            o = (1.0 - mu) * o + mu * o_l
            if W is not None:  # the window state keeps the last W keys (those a next query may need)
                k_all, v_all = k_all[:, :, -W:], v_all[:, :, -W:]
        out = self._proj(i, "o_proj", o.transpose(1, 2).reshape(B, T, H * d), not plain)
        return out, LayerState(k_all, v_all, S)

    def _attention_with_sinks(self, i, x, q, k, v, qr, k_all, v_all, k_pos, pos, st, W, Ns, mode, chunk_size):
        """attention() of a converted layer with Ns sinks; k_all, v_all, k_pos: the window cache + new keys."""
        B, T, _ = x.shape
        H, d = self.n_heads, self.head_dim
        if st.sk is not None:  # sinks that already left the window come first (positions 0 .. n_s - 1)
            k_all, v_all = torch.cat([st.sk, k_all], dim=2), torch.cat([st.sv, v_all], dim=2)
            k_pos = torch.cat([torch.arange(st.sk.shape[2], device=x.device), k_pos])
        sink_pos = pos.clamp(max=W + Ns - 1)
        cos_s, sin_s = self.base.model.rotary_emb(x, sink_pos.unsqueeze(0).expand(B, T))
        q_sink, _ = _rotate(q, q[:, :1], cos_s, sin_s)
        attn = self.base.model.layers[i].self_attn
        o = banded_softmax_attention(qr, k_all, v_all, pos, k_pos, W, attn.scaling, H // self.n_kv, Ns, q_sink)
        hp = self.hybrid[str(i)]
        o_l, S = self._linear_branch(hp, x, q, k, v, st.S, mode, chunk_size)
        mu = hp.mu().view(1, H, 1, 1)
        o = (1.0 - mu) * o + mu * o_l
        # new state: the last W keys, and the sinks before them
        end = int(pos[-1]) + 1
        start = max(0, end - W)
        in_window = k_pos >= start
        is_sink = (k_pos < Ns) & ~in_window
        sk = k_all[:, :, is_sink] if bool(is_sink.any()) else None
        sv = v_all[:, :, is_sink] if bool(is_sink.any()) else None
        out = self._proj(i, "o_proj", o.transpose(1, 2).reshape(B, T, H * d))
        return out, LayerState(k_all[:, :, in_window], v_all[:, :, in_window], S, sk, sv)

    def _gates(self, hp: HybridParams, x: torch.Tensor):
        """b, a [B, H, T] (None where the operator does not use them)."""
        op, B, T = self.cfg.operator, x.shape[0], x.shape[1]
        if self.cfg.gates == "learned":
            b = torch.sigmoid(F.linear(x, hp.w_b, hp.c_b)).transpose(1, 2)
            a = torch.sigmoid(F.linear(x, hp.w_a, hp.c_a)).transpose(1, 2)
        else:
            b = x.new_full((B, self.n_heads, T), float(self.cfg.constants["b"]))
            a = x.new_full((B, self.n_heads, T), float(self.cfg.constants["a"]))
        return (b if op in ("delta", "gated_delta") else None), (a if op in ("gated", "gated_delta") else None)

    def _linear_branch(self, hp, x, q, k, v, S0, mode, chunk_size):
        """q [B, H, T, d], k, v [B, Hkv, T, d] before RoPE -> (RMS-normed o_l [B, H, T, d], S [B, H, d, d])."""
        B, H, T, d = q.shape
        rep = H // self.n_kv
        fm = self.cfg.feature_map
        dt = torch.promote_types(q.dtype, torch.float32)  # S and the operator run in fp32 (fp64 models: fp64)
        pq = la.feature_map(fm, q.to(dt)).reshape(B * H, T, d)
        pk = la.feature_map(fm, _repeat_heads(k, rep).to(dt)).reshape(B * H, T, d)
        vv = _repeat_heads(v, rep).to(dt).reshape(B * H, T, d)
        b, a = self._gates(hp, x)
        b = None if b is None else b.reshape(B * H, T).to(dt)
        a = None if a is None else a.reshape(B * H, T).to(dt)
        S0 = torch.zeros(B * H, d, d, dtype=dt, device=q.device) if S0 is None else S0.reshape(B * H, d, d).to(dt)
        if mode == "recurrent":
            o, S = la.linear_attention_recurrent(self.cfg.operator, pq, pk, vv, beta=b, alpha=a, state=S0)
        else:
            o, S = la.linear_attention_chunked(self.cfg.operator, pq, pk, vv, b, a, S0, chunk_size)
        o = o.reshape(B, H, T, d)
        o = o * torch.rsqrt(o.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)
        return o.to(q.dtype), S.to(dt).reshape(B, H, d, d)


# ----- base model loading ----------------------------------------------------------------------------------
def load_base(gguf_path, cache: bool = True):
    """Loads (model fp32 eval, tokenizer) from a GGUF via transformers (dequantised weights).

    With cache=True the dequantised state dict is saved once under <repo>/.cache/titand_ref/<fingerprint>/
    and reloaded from there (the same fp32 tensors, only faster to load than dequantising again)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from titand_ref.adapter import base_fingerprint

    gguf_path = Path(gguf_path).resolve()
    cdir = None
    if cache:
        fp = base_fingerprint(gguf_path)
        key = fp.rsplit("@", 1)[1] + "-" + "".join(c if c.isalnum() else "_" for c in fp.rsplit("@", 1)[0])
        cdir = Path(__file__).resolve().parents[2] / ".cache" / "titand_ref" / key
        if (cdir / "done").exists():
            config = AutoConfig.from_pretrained(cdir)
            from safetensors.torch import load_file
            with torch.device("meta"):  # no random init: every weight comes from the cache
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            sd = load_file(str(cdir / "weights.safetensors"))
            missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
            if unexpected or any(not k.startswith("lm_head") for k in missing):
                raise RuntimeError(f"bad cache {cdir}: missing {missing} unexpected {unexpected}")
            if "lm_head.weight" not in sd:
                model.lm_head.weight = model.model.embed_tokens.weight  # tied embeddings
            model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config)  # non-persistent buffers
            return model.eval(), AutoTokenizer.from_pretrained(cdir)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    if cdir is not None:
        import os
        import shutil
        import tempfile
        from safetensors.torch import save_file
        cdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cdir.parent))
        tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k.startswith("lm_head"))}
        save_file(sd, str(tmp / "weights.safetensors"))
        conf = model.config.to_dict()
        conf.pop("quantization_config", None)
        (tmp / "config.json").write_text(__import__("json").dumps(conf, indent=1))
        tok.save_pretrained(tmp)
        (tmp / "done").write_text("ok\n")
        try:
            os.rename(tmp, cdir)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return model.eval(), tok
