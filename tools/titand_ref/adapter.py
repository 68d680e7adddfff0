"""The titand TPTT adapter format: load, save, validate (spec: docs/adapter-format.md).

A folder with
  tptt_config.json      {format: "titand-tptt", version: 1, base_model, operator, feature_map, window, sinks (optional), gates,
                         constants, layers, mu, lora}
  adapter.safetensors   layers.{i}.{q,k,v,o}_proj.lora_A [r, in] / lora_B [out, r]   (HF layout, scale alpha/r)
                        layers.{i}.gate.{w_b [H, hidden], c_b [H], w_a [H, hidden], c_a [H]}
                        layers.{i}.mu [H]                                            (optional, overrides config)
  or, for the LoRA part, a PEFT folder's adapter_config.json + adapter_model.safetensors beside them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from titand_ref.tptt_model import (FEATURE_MAPS, GATE_KINDS, LORA_TARGETS, OPERATORS, LoraSpec, TPTTConfig,
                                   TPTTModel)

FORMAT = "titand-tptt"
VERSION = 1
CONFIG_FILE = "tptt_config.json"
TENSOR_FILE = "adapter.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_TENSORS = "adapter_model.safetensors"
FINGERPRINT_TENSOR = "token_embd.weight"
CONFIG_KEYS = {"format", "version", "base_model", "operator", "feature_map", "window", "sinks", "gates", "constants",
               "layers", "mu", "lora", "training"}
_NAME_RE = re.compile(r"^layers\.(\d+)\.(?:(q_proj|k_proj|v_proj|o_proj)\.(lora_A|lora_B)|gate\.(w_b|c_b|w_a|c_a)|(mu))$")
_PEFT_RE = re.compile(r"layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.(lora_A|lora_B)(?:\.default)?\.weight$")


class AdapterError(ValueError):
    """An adapter folder that cannot be used with this base model (message says why)."""


# ----- base model identity ---------------------------------------------------------------------------------
def _gguf_scan(path) -> tuple[str, int, int]:
    """Minimal GGUF v2/v3 reader: (general.name, absolute offset, byte size) of token_embd.weight."""
    import struct
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    with open(path, "rb") as f:
        buf = f.read(16 << 20)  # metadata + tensor infos; grown below if needed

        def need(pos, n):
            nonlocal buf
            while pos + n > len(buf):
                more = f.read(16 << 20)
                if not more:
                    raise AdapterError(f"{path}: truncated GGUF header")
                buf += more

        def rd(fmt, pos):
            n = struct.calcsize(fmt)
            need(pos, n)
            return struct.unpack_from(fmt, buf, pos)[0], pos + n

        def rd_str(pos):
            n, pos = rd("<Q", pos)
            need(pos, n)
            return buf[pos:pos + n].decode("utf-8", "replace"), pos + n

        def skip_value(vt, pos):
            if vt == 8:
                n, pos = rd("<Q", pos)
                return pos + n
            if vt == 9:
                it, pos = rd("<I", pos)
                cnt, pos = rd("<Q", pos)
                if it in scalar:
                    return pos + cnt * struct.calcsize(scalar[it])
                for _ in range(cnt):
                    pos = skip_value(it, pos)
                return pos
            return pos + struct.calcsize(scalar[vt])

        need(0, 24)
        if buf[:4] != b"GGUF":
            raise AdapterError(f"{path}: not a GGUF file")
        _, pos = rd("<I", 4)
        n_tensors, pos = rd("<Q", pos)
        n_kv, pos = rd("<Q", pos)
        name, align = "", 32
        for _ in range(n_kv):
            key, pos = rd_str(pos)
            vt, pos = rd("<I", pos)
            if key == "general.name" and vt == 8:
                name, pos = rd_str(pos)
            elif key == "general.alignment" and vt in scalar:
                align, pos = rd(scalar[vt], pos)
            else:
                pos = skip_value(vt, pos)
        found = None
        for _ in range(n_tensors):
            tname, pos = rd_str(pos)
            nd, pos = rd("<I", pos)
            dims = []
            for _ in range(nd):
                dim, pos = rd("<Q", pos)
                dims.append(dim)
            ttype, pos = rd("<I", pos)
            off, pos = rd("<Q", pos)
            if tname == FINGERPRINT_TENSOR:
                found = (dims, ttype, off)
        if found is None:
            raise AdapterError(f"{path}: no tensor {FINGERPRINT_TENSOR} to fingerprint")
        data_start = (pos + align - 1) // align * align
        dims, ttype, off = found
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        n_el = 1
        for dim in dims:
            n_el *= dim
        return name, data_start + off, n_el // block * type_size


def base_fingerprint(gguf_path) -> str:
    """'<general.name>@<hex16>': hex16 = the first 16 hex digits of sha256 over the raw bytes of the GGUF
    tensor token_embd.weight exactly as stored in the file (its quantised blocks: n_elements / block_size *
    type_size bytes, starting at the aligned start of the data section + the tensor's offset)."""
    name, start, n_bytes = _gguf_scan(gguf_path)
    with open(gguf_path, "rb") as f:
        f.seek(start)
        raw = f.read(n_bytes)
    if len(raw) != n_bytes:
        raise AdapterError(f"{gguf_path}: truncated tensor data")
    return f"{name}@{hashlib.sha256(raw).hexdigest()[:16]}"


# ----- reading ---------------------------------------------------------------------------------------------
@dataclass
class Adapter:
    base_model: str
    config: TPTTConfig
    mu: dict = field(default_factory=dict)        # layer -> tensor [H]
    tensors: dict = field(default_factory=dict)   # gate + LoRA tensors by format name
    raw_config: dict = field(default_factory=dict)


def load_peft_lora(folder) -> tuple[dict, dict]:
    """Reads a PEFT LoRA folder -> ({r, alpha, targets}, {format name: tensor})."""
    folder = Path(folder)
    cfg = json.loads((folder / PEFT_CONFIG).read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{folder / PEFT_CONFIG}: peft_type {cfg.get('peft_type')!r} is not LORA")
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise AdapterError(f"{folder / PEFT_CONFIG}: rsLoRA / DoRA are not supported (scale must be alpha/r)")
    if cfg.get("fan_in_fan_out"):
        raise AdapterError(f"{folder / PEFT_CONFIG}: fan_in_fan_out LoRA is not supported")
    tensors = {}
    for key, t in load_file(str(folder / PEFT_TENSORS)).items():
        m = _PEFT_RE.search(key)
        if m is None:
            raise AdapterError(f"{folder / PEFT_TENSORS}: unsupported tensor {key!r} (only q/k/v/o_proj LoRA)")
        tensors[f"layers.{m.group(1)}.{m.group(2)}.{m.group(3)}"] = t.float()
    targets = sorted({k.split(".")[2] for k in tensors}, key=LORA_TARGETS.index)
    return {"r": int(cfg["r"]), "alpha": float(cfg.get("lora_alpha", cfg["r"])), "targets": targets}, tensors


def read_adapter(folder) -> Adapter:
    """Parses and checks a folder on its own (no base model needed). Raises AdapterError."""
    folder = Path(folder)
    cpath = folder / CONFIG_FILE
    if not cpath.exists():
        raise AdapterError(f"{folder}: missing {CONFIG_FILE}")
    try:
        raw = json.loads(cpath.read_text())
    except json.JSONDecodeError as e:
        raise AdapterError(f"{cpath}: invalid JSON: {e}") from e
    if raw.get("format") != FORMAT:
        raise AdapterError(f"{cpath}: format is {raw.get('format')!r}, expected {FORMAT!r}")
    if raw.get("version") != VERSION:
        raise AdapterError(f"{cpath}: unsupported version {raw.get('version')!r} (this reader knows {VERSION})")
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise AdapterError(f"{cpath}: unknown keys {sorted(unknown)}")
    for key in ("base_model", "operator", "feature_map", "window", "gates", "layers", "mu", "lora"):
        if key not in raw:
            raise AdapterError(f"{cpath}: missing key {key!r}")
    if raw["operator"] not in OPERATORS:
        raise AdapterError(f"{cpath}: unknown operator {raw['operator']!r}; expected one of {list(OPERATORS)}")
    if raw["feature_map"] not in FEATURE_MAPS:
        raise AdapterError(f"{cpath}: unknown feature_map {raw['feature_map']!r}; expected {list(FEATURE_MAPS)}")
    if raw["gates"] not in GATE_KINDS:
        raise AdapterError(f"{cpath}: unknown gates {raw['gates']!r}; expected one of {list(GATE_KINDS)}")
    tensors = load_file(str(folder / TENSOR_FILE)) if (folder / TENSOR_FILE).exists() else {}
    lora = raw["lora"]
    if (folder / PEFT_CONFIG).exists():
        peft_cfg, peft_tensors = load_peft_lora(folder)
        if any(".lora_" in k for k in tensors):
            raise AdapterError(f"{folder}: LoRA given twice (in {TENSOR_FILE} and as a PEFT folder)")
        if lora is not None and (lora.get("r") != peft_cfg["r"] or float(lora.get("alpha")) != peft_cfg["alpha"]):
            raise AdapterError(f"{cpath}: lora {lora} disagrees with the PEFT config {peft_cfg}")
        lora = peft_cfg if lora is None else lora
        tensors.update(peft_tensors)
    constants = raw.get("constants") or {}
    if raw["gates"] == "constant" and not {"b", "a"} <= set(constants):
        raise AdapterError(f"{cpath}: gates 'constant' needs constants {{b, a}}, got {constants}")
    lspec = None
    if lora is not None:
        for key in ("r", "alpha", "targets"):
            if key not in lora:
                raise AdapterError(f"{cpath}: lora is missing {key!r}")
        lora_layers = sorted({int(k.split(".")[1]) for k in tensors if ".lora_" in k})
        lspec = LoraSpec(r=int(lora["r"]), alpha=float(lora["alpha"]), targets=tuple(lora["targets"]),
                         layers=lora_layers)
    cfg = TPTTConfig(operator=raw["operator"], feature_map=raw["feature_map"], window=raw["window"],
                     sinks=raw.get("sinks", 0), gates=raw["gates"], constants=dict(constants), layers=list(raw["layers"]), lora=lspec)
    try:
        cfg.validate(n_layers=10 ** 9)  # layer range is checked against the model later
    except ValueError as e:
        raise AdapterError(f"{cpath}: {e}") from e
    if not isinstance(raw["base_model"], str) or "@" not in raw["base_model"]:
        raise AdapterError(f"{cpath}: base_model must be '<general.name>@<hex16>', got {raw['base_model']!r}")
    return Adapter(raw["base_model"], cfg, {}, {k: v.float() for k, v in tensors.items()}, raw)


def _mu_from_config(raw_mu, layers, n_heads, where) -> dict:
    """Config mu (number | per layer [number | [H numbers]]) -> {layer: tensor [H]}."""
    if isinstance(raw_mu, (int, float)):
        per_layer = [raw_mu] * len(layers)
    elif isinstance(raw_mu, list) and len(raw_mu) == len(layers):
        per_layer = raw_mu
    else:
        raise AdapterError(f"{where}: mu must be a number or a list with one entry per converted layer "
                           f"({len(layers)}), got {raw_mu!r}")
    out = {}
    for i, m in zip(layers, per_layer):
        t = torch.tensor(m, dtype=torch.float32).expand(n_heads).clone() if isinstance(m, (int, float)) \
            else torch.tensor(m, dtype=torch.float32)
        if t.shape != (n_heads,) or not bool(((t >= 0) & (t <= 1)).all()):
            raise AdapterError(f"{where}: mu of layer {i} must be a number or {n_heads} numbers in [0, 1], got {m}")
        out[i] = t
    return out


def validate_against(adapter: Adapter, hf_config, fingerprint: str | None) -> None:
    """Checks base identity, layer indices, tensor names and shapes against the base model config."""
    if fingerprint is not None and adapter.base_model != fingerprint:
        raise AdapterError(f"adapter was made for base model {adapter.base_model!r}, "
                           f"but the loaded base model is {fingerprint!r}")
    cfg = adapter.config
    n_layers, H = hf_config.num_hidden_layers, hf_config.num_attention_heads
    hidden, Hkv = hf_config.hidden_size, hf_config.num_key_value_heads
    d = getattr(hf_config, "head_dim", None) or hidden // H
    try:
        cfg.validate(n_layers)
    except ValueError as e:
        raise AdapterError(str(e)) from e
    io = {"q_proj": (hidden, H * d), "k_proj": (hidden, Hkv * d), "v_proj": (hidden, Hkv * d),
          "o_proj": (H * d, hidden)}
    uses_b = cfg.operator in ("delta", "gated_delta")
    uses_a = cfg.operator in ("gated", "gated_delta")
    for name, t in adapter.tensors.items():
        m = _NAME_RE.match(name)
        if m is None:
            raise AdapterError(f"unknown tensor {name!r} in adapter")
        i = int(m.group(1))
        if i >= n_layers:
            raise AdapterError(f"tensor {name!r}: layer {i} out of range (model has {n_layers})")
        if m.group(2):
            if cfg.lora is None:
                raise AdapterError(f"tensor {name!r}: LoRA tensor but config lora is null")
            if m.group(2) not in cfg.lora.targets:
                raise AdapterError(f"tensor {name!r}: {m.group(2)} is not in lora.targets {list(cfg.lora.targets)}")
            fan_in, fan_out = io[m.group(2)]
            want = (cfg.lora.r, fan_in) if m.group(3) == "lora_A" else (fan_out, cfg.lora.r)
            other = name[:-1] + ("B" if m.group(3) == "lora_A" else "A")
            if other not in adapter.tensors:
                raise AdapterError(f"missing tensor {other!r} (pair of {name!r})")
        elif m.group(4):
            if cfg.gates != "learned" or i not in cfg.layers:
                raise AdapterError(f"tensor {name!r}: gate weights need gates 'learned' on a converted layer")
            g = m.group(4)
            if (g.endswith("_b") and not uses_b) or (g.endswith("_a") and not uses_a):
                raise AdapterError(f"tensor {name!r} is not used by operator {cfg.operator!r}")
            want = (H, hidden) if g.startswith("w") else (H,)
        else:
            if i not in cfg.layers:
                raise AdapterError(f"tensor {name!r}: mu for layer {i}, which is not converted")
            want = (H,)
            if not bool(((t >= 0) & (t <= 1)).all()):
                raise AdapterError(f"tensor {name!r}: mu values must lie in [0, 1]")
        if tuple(t.shape) != tuple(want):
            raise AdapterError(f"tensor {name!r} has shape {list(t.shape)}, expected {list(want)}")
    if cfg.gates == "learned":
        needed = (["w_b", "c_b"] if uses_b else []) + (["w_a", "c_a"] if uses_a else [])
        for i in cfg.layers:
            for g in needed:
                if f"layers.{i}.gate.{g}" not in adapter.tensors:
                    raise AdapterError(f"missing tensor 'layers.{i}.gate.{g}' (gates 'learned', operator "
                                       f"{cfg.operator!r})")
    if cfg.lora is not None and not any(".lora_" in k for k in adapter.tensors):
        raise AdapterError("config lora is set but the adapter has no LoRA tensors")
    adapter.mu = _mu_from_config(adapter.raw_config["mu"], cfg.layers, H, CONFIG_FILE)
    for i in cfg.layers:
        if f"layers.{i}.mu" in adapter.tensors:
            adapter.mu[i] = adapter.tensors[f"layers.{i}.mu"].clone()


def load_adapter(folder, base_model, gguf_path=None) -> TPTTModel:
    """Builds a TPTTModel from a HF base model and an adapter folder. If gguf_path is given the adapter's
    base_model must equal base_fingerprint(gguf_path). Raises AdapterError with the reason."""
    adapter = read_adapter(folder)
    validate_against(adapter, base_model.config, base_fingerprint(gguf_path) if gguf_path else None)
    model = TPTTModel(base_model, adapter.config)
    apply_tensors(model, adapter)
    return model


def apply_tensors(model: TPTTModel, adapter: Adapter) -> None:
    with torch.no_grad():
        lora = {(i, t): mod for i, t, mod in model.lora_modules()}
        for name, t in adapter.tensors.items():
            parts = name.split(".")
            i = int(parts[1])
            if parts[2] == "gate":
                getattr(model.hybrid[str(i)], parts[3]).copy_(t)
            elif parts[2] in LORA_TARGETS:
                getattr(lora[(i, parts[2])], parts[3]).copy_(t)
        model.set_mu({i: m for i, m in adapter.mu.items()})


# ----- writing ---------------------------------------------------------------------------------------------
def save_adapter(model: TPTTModel, folder, base_model: str, training: dict | None = None) -> None:
    """Writes tptt_config.json + adapter.safetensors for a TPTTModel (mu written into the config)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    uses = {"b": cfg.operator in ("delta", "gated_delta"), "a": cfg.operator in ("gated", "gated_delta")}
    tensors = {}
    for key, hp in model.hybrid.items():
        if cfg.gates == "learned":
            for g in ("w_b", "c_b", "w_a", "c_a"):
                if uses[g[-1]]:
                    tensors[f"layers.{key}.gate.{g}"] = getattr(hp, g).detach().float().contiguous()
    for i, t, mod in model.lora_modules():
        tensors[f"layers.{i}.{t}.lora_A"] = mod.lora_A.detach().float().contiguous()
        tensors[f"layers.{i}.{t}.lora_B"] = mod.lora_B.detach().float().contiguous()
    mu = model.mu_values()
    raw = {
        "format": FORMAT, "version": VERSION, "base_model": base_model,
        "operator": cfg.operator, "feature_map": cfg.feature_map, "window": cfg.window, "gates": cfg.gates,
        "constants": ({"b": float(cfg.constants["b"]), "a": float(cfg.constants["a"])}
                      if cfg.gates == "constant" else None),
        "layers": list(cfg.layers),
        "mu": [[float(x) for x in mu[i].tolist()] for i in cfg.layers],
        "lora": (None if cfg.lora is None else
                 {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "targets": list(cfg.lora.targets)}),
    }
    if cfg.sinks:  # written only when used: a sinks-free adapter stays readable by older readers
        raw["sinks"] = cfg.sinks
    if training:
        raw["training"] = training
    (folder / CONFIG_FILE).write_text(json.dumps(raw, indent=1) + "\n")
    save_file(tensors, str(folder / TENSOR_FILE), metadata={"format": FORMAT, "version": str(VERSION)})
    # safetensors creates the file owner-only (0600); give it the mode any other file here gets (umask), so a
    # server running as another user can read the adapter it is pointed at.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder / TENSOR_FILE, 0o666 & ~umask)
