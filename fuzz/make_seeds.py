"""Writes the committed seed corpus fuzz/corpus/<target>/ (small valid and near-valid inputs).
Run from the repository root with the project venv: .venv/bin/python fuzz/make_seeds.py"""
import json
import struct
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "corpus"


def put(target, name, data: bytes):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors_bytes(tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": {"float32": "F32", "float16": "F16"}[str(arr.dtype)], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def gguf_bytes():
    import gguf
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "t.gguf"
        w = gguf.GGUFWriter(str(p), "llama")
        w.add_block_count(1)
        w.add_context_length(32)
        w.add_embedding_length(8)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "ab", "<s>"])
        w.add_token_types([1, 1, 1, 3])
        w.add_token_merges(["a b"])
        w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
        w.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return p.read_bytes()


def main():
    put("fuzz_safetensors", "two_tensors", safetensors_bytes(
        {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.float16)}, {"format": "pt"}))
    put("fuzz_safetensors", "empty", safetensors_bytes({}))
    put("fuzz_gguf", "tiny_llama", gguf_bytes())
    tptt = {"format": "titand-tptt", "version": 1, "base_model": "m", "operator": "gated_delta",
            "feature_map": "tptt", "window": 4, "gates": "constant", "constants": {"b": 0.5, "a": 0.9},
            "layers": [0, 1], "mu": [0.5, [0.1, 0.9]], "lora": {"r": 2, "alpha": 4, "targets": ["q_proj"]}}
    put("fuzz_adapter_config", "tptt_config", b"\x00" + json.dumps(tptt).encode())
    put("fuzz_adapter_config", "peft_config", b"\x01" + json.dumps(
        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_dora": False, "target_modules": ["q_proj"]}).encode())
    put("fuzz_adapter_config", "peft_wrong_types", b"\x01" + json.dumps({"peft_type": 5, "r": "8"}).encode())
    layer = lambda n, mem: {"len": n, "has_kv": True, "kv_dtype": "float32", "kv_shape": [1, n, 4],
                            "has_memory": mem, **({"memory_dtype": "float32", "memory_shape": [2, 4, 4]} if mem else {})}
    header = {"model_id": "m", "adapter_id": "", "num_layers": 2, "num_kv_heads": 1, "head_dim": 4,
              "dtype": "float32", "num_tokens": 3, "pending": [7], "state_bytes": 0,
              "data_bytes": 2 * (2 * 3 * 4 * 4) + 2 * 4 * 4 * 4,  # 2 layers of k+v [1,3,4] f32 + memory [2,4,4]
              "layers": [layer(3, False), layer(3, True)]}
    put("fuzz_snapshot", "header_json", b"\x01" + json.dumps(header).encode())
    put("fuzz_snapshot", "raw_magic", b"\x00TTNDSESS\x01\x00\x00\x00\x02\x00\x00\x00{}")
    put("fuzz_tokenizer", "chat", "Hello, world! <|im_start|>user\nWhat is 2+2?<|im_end|>\n".encode())
    put("fuzz_tokenizer", "unicode", "Grüße, 日本語 🚀 \xff\xfe invalid".encode("utf-8", "surrogateescape") + b"\xff\xfe")
    put("fuzz_tokenizer", "tokenizer_json", b"\xff" + json.dumps(
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
         "added_tokens": [{"id": 3, "content": "<s>", "special": True}],
         "pre_tokenizer": {"type": "ByteLevel"}}).encode())
    put("fuzz_sampling_params", "greedy", struct.pack("<ffffiQ", 0.0, 1.0, 0.0, 1.0, 0, 1) + struct.pack("<4f", 1, 2, 3, 4))
    put("fuzz_sampling_params", "sampled", struct.pack("<ffffiQ", 0.7, 0.9, 0.05, 1.1, 2, 42) + struct.pack("<4f", 1, 2, 3, 4))


if __name__ == "__main__":
    main()
