"""Tokenizer checks against Hugging Face references.

- SmolLM2 (bundled GGUF): ids identical to the HF fast tokenizer transformers builds from the GGUF, on
  >= 1 MB of CPython docs plus tests/py/data/mixed_text.txt. transformers' GGUF loader gives a
  "smollm" file a plain GPT-2 ByteLevel pre-tokenizer; SmolLM2's published tokenizer.json (and
  llama.cpp's "smollm") isolate every digit first, so the reference gets that pre-tokenizer back.
- Llama 3 / Qwen2 pre-tokenizers: BPE vocabularies trained here with the `tokenizers` library using
  those models' tokenizer.json pre-tokenizer configurations; FromHfDir must match them.
- decode(encode(x)) == x, streaming detokenization, chat rendering vs apply_chat_template.
"""

import collections
import json
import os
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "bin" / "tok_tool"
GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CORPUS = REPO / ".cache" / "corpus"
MIXED = Path(__file__).parent / "data" / "mixed_text.txt"

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "user", "content": "  Write a haiku about the sea.  \n"},
        {"role": "assistant", "content": "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."},
        {"role": "user", "content": "Now one in Français with émoji 🌊 and 中文"},
    ],
    [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": 'Give {"a": 1}'},
        {"role": "assistant", "content": '{"a": 1}'},
        {"role": "user", "content": "\tThanks\r\n"},
    ],
]


def run_tool(*args):
    if not TOOL.exists():
        pytest.fail(f"tok_tool binary missing at {TOOL}: build target tok_tool (TITAND_BUILD_DIR={BUILD})")
    res = subprocess.run([str(TOOL), *map(str, args)], capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return json.loads(res.stdout)


def corpus_text(subdir, min_bytes, skip_bytes=0):
    """Whole files of the corpus, sorted by name, from skip_bytes on until min_bytes are collected."""
    files = sorted(p for p in (CORPUS / subdir).iterdir() if p.name.endswith((".txt", ".rst")))
    assert files, f"corpus {CORPUS / subdir} is empty: run scripts/fetch_corpus.sh"
    out, seen, total = [], 0, 0
    for p in files:
        t = p.read_text(encoding="utf-8", errors="replace")
        seen += len(t.encode())
        if seen <= skip_bytes:
            continue
        out.append(t)
        total += len(t.encode())
        if total >= min_bytes:
            break
    return out


def byte_decoder():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


@pytest.fixture(scope="module")
def hf_smollm():
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    # SmolLM2's published pre-tokenizer (tokenizer.json) = llama.cpp "smollm".
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    return tok


def compare_chunks(tmp_path, model, chunks, hf_encode):
    for i, chunk in enumerate(chunks):
        f = tmp_path / f"chunk{i}.txt"
        f.write_bytes(chunk.encode("utf-8"))
        ours = run_tool("encode", "--model", model, "--file", f)
        ref = hf_encode(chunk)
        if ours != ref:
            k = next((j for j, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
            pytest.fail(f"chunk {i}: first difference at token {k}: ours {ours[k - 3:k + 5]} ref {ref[k - 3:k + 5]}")


def test_smollm_ids_match_hf_on_corpus(tmp_path, hf_smollm):
    files = corpus_text("python-doc", 1_100_000)
    chunks, cur = [], ""
    for t in files:  # ~4 chunks of whole files
        cur += t
        if len(cur) > 300_000:
            chunks.append(cur)
            cur = ""
    chunks.append(cur + MIXED.read_text(encoding="utf-8"))
    chunks.append(MIXED.read_text(encoding="utf-8"))
    assert sum(len(c.encode()) for c in chunks) >= 1_000_000
    compare_chunks(tmp_path, GGUF, chunks, lambda s: hf_smollm.encode(s, add_special_tokens=True))


def test_smollm_matches_unmodified_hf_gguf_without_numbers(tmp_path):
    """transformers' own GGUF tokenizer (GPT-2 pre-tokenizer, no digit isolation) agrees wherever the
    text has no number characters, the only place its pre-tokenizer differs from "smollm"."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    text = "".join(corpus_text("python-doc", 300_000, skip_bytes=1_500_000)) + MIXED.read_text(encoding="utf-8")
    text = "".join(c for c in text if not unicodedata.category(c).startswith("N"))
    compare_chunks(tmp_path, GGUF, [text], lambda s: tok.encode(s, add_special_tokens=True))


def test_smollm_info(hf_smollm):
    info = run_tool("info", "--model", GGUF)
    assert info["vocab_size"] == len(hf_smollm.get_vocab()) == 49152
    assert info["pre"] == "smollm"
    assert info["eos_id"] == hf_smollm.eos_token_id
    assert hf_smollm.convert_tokens_to_ids("<|im_end|>") in info["stop_ids"]
    assert hf_smollm.convert_tokens_to_ids("<|endoftext|>") in info["stop_ids"]


def test_no_parse_special(tmp_path, hf_smollm):
    text = "a<|im_start|>user\nhi<|im_end|>"
    f = tmp_path / "s.txt"
    f.write_text(text)
    assert run_tool("encode", "--model", GGUF, "--file", f)[1] == hf_smollm.convert_tokens_to_ids("<|im_start|>")
    plain = run_tool("encode", "--model", GGUF, "--file", f, "--no-parse-special")
    assert plain == hf_smollm.encode(text, split_special_tokens=True)
    assert hf_smollm.convert_tokens_to_ids("<|im_start|>") not in plain


def test_roundtrip_and_speed(tmp_path):
    text = "".join(corpus_text("python-doc", 1_000_000)) + MIXED.read_text(encoding="utf-8")
    f = tmp_path / "big.txt"
    f.write_bytes(text.encode())
    r = run_tool("roundtrip", "--model", GGUF, "--file", f)
    assert r["ok"], "decode(encode(x)) != x"
    print(f"encode speed: {r['mb_per_s']:.2f} MB/s over {r['n_bytes']} bytes ({r['n_tokens']} tokens)")
    assert r["seconds"] < 3.0


def check_stream(tmp_path, ids, expected_text, keep_special=False):
    f = tmp_path / "ids.json"
    f.write_text(json.dumps(ids))
    args = ["stream", "--model", GGUF, "--ids-json", f] + (["--keep-special"] if keep_special else [])
    r = run_tool(*args)
    chunks = [bytes.fromhex(c) for c in r["chunks_hex"]]
    for c in chunks:
        c.decode("utf-8")  # every chunk is well-formed UTF-8 (raises otherwise)
    assert b"".join(chunks).decode("utf-8") == expected_text
    return chunks


def test_stream_matches_full_decode(tmp_path, hf_smollm):
    text = MIXED.read_text(encoding="utf-8")
    ids = hf_smollm.encode(text)
    bd = byte_decoder()
    added = hf_smollm.backend_tokenizer.get_added_tokens_decoder()
    special = {i for i, t in added.items() if t.special}
    assert len(special) > 3  # <|im_start|> ... and the other control tokens (<repo_name>, ...)
    ref = b"".join(
        bytes(bd[c] for c in tok) for i, tok in zip(ids, hf_smollm.convert_ids_to_tokens(ids)) if i not in special
    ).decode("utf-8", "replace")
    chunks = check_stream(tmp_path, ids, ref)
    assert len(chunks) > 100
    check_stream(tmp_path, ids, text, keep_special=True)


def test_stream_split_emoji_and_invalid_bytes(tmp_path, hf_smollm):
    vocab = hf_smollm.get_vocab()
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    byte_id = {b: vocab[b2u[b]] for b in range(256) if b2u[b] in vocab}
    emoji = "👩‍💻😀é中".encode()
    ids = [byte_id[b] for b in emoji]
    chunks = check_stream(tmp_path, ids, emoji.decode())
    assert chunks == [c.encode() for c in emoji.decode()]  # one chunk per code point, none split
    bad = b"a\xf0\x9f\x98b\xe2\x82z\x80\xbfc\xe4\xb8"  # truncated 4- and 3-byte, stray bytes, unfinished tail
    assert all(b in byte_id for b in emoji + bad)
    check_stream(tmp_path, [byte_id[b] for b in bad], bad.decode("utf-8", "replace"))


@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
def test_smollm_chat_matches_hf(tmp_path, hf_smollm, conv):
    msgs = CONVERSATIONS[conv]
    f = tmp_path / "m.json"
    f.write_text(json.dumps(msgs))
    r = run_tool("chat", "--model", GGUF, "--messages-json", f)
    ref = hf_smollm.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert r["format"] == "chatml"
    assert r["text"] == ref
    assert r["ids"] == hf_smollm.encode(ref)
    # Per-turn rendering: earlier messages (first turn) + the last one (later turn) == all at once.
    if len(msgs) > 1:
        f.write_text(json.dumps(msgs[:-1]))
        first = run_tool("chat", "--model", GGUF, "--messages-json", f, "--no-generation-prompt")["text"]
        f.write_text(json.dumps(msgs[-1:]))
        later = run_tool("chat", "--model", GGUF, "--messages-json", f, "--not-first-turn")["text"]
        assert first + later == ref


SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def base_bpe():
    """tokenizer.json dict of a byte-level BPE trained on coarse chunks (<= 40 chars, across spaces,
    digits and punctuation), so that its merges cross every boundary a real pre-tokenizer draws: the
    ids then depend on exactly where the pre-tokenizer splits. Plus whole-word vocabulary entries no
    merge chain reaches (as Llama 3 has), which only ignore_merges emits."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\n]{1,40}|\n+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=8000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_text("python-doc", 1_000_000) + [MIXED.read_text(encoding="utf-8")], trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    words = collections.Counter(re.findall(r"\b[a-z]{5,}\b", "".join(eval_text())))
    for w, _ in words.most_common(300):
        if "\u0120" + w not in vocab:
            vocab["\u0120" + w] = len(vocab)
    assert len(vocab) > 8100
    return j


def make_hf_dir(out_dir, base, split_regex, nfc, ignore_merges, bos, eos, template):
    """An HF tokenizer directory: base vocabulary/merges with a real model's normalizer, pre-tokenizer
    (Split(regex, isolated) + ByteLevel(use_regex=False), as Llama 3 / Qwen2 tokenizer.json have),
    BOS post-processor, a user-defined added token and a tokenizer_config.json with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

    tok = Tokenizer.from_str(json.dumps(base))
    tok.normalizer = normalizers.NFC() if nfc else None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens(["<think>", "</think>"])  # user-defined (non-special) added tokens
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    out_dir.mkdir()
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = ignore_merges
    (out_dir / "tokenizer.json").write_text(json.dumps(j))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "chat_template": template}
    if bos:
        cfg["bos_token"] = bos
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    return Tokenizer.from_file(str(out_dir / "tokenizer.json"))


def eval_text():
    """~200 KB unseen in training: Linux docs, Python docs beyond the training slice, mixed text."""
    mixed = MIXED.read_text(encoding="utf-8")
    linux = "".join(corpus_text("linux-doc", 100_000))[:100_000]
    py = "".join(corpus_text("python-doc", 60_000, skip_bytes=3_000_000))[:60_000]
    return [linux, py + mixed, mixed.replace("<|im_start|>", "<|start_header_id|>") + " <think>x</think> "]


@pytest.mark.parametrize("kind", ["llama3", "qwen2"])
def test_hf_dir_pretokenizers_match(tmp_path, base_bpe, kind):
    if kind == "llama3":
        ref = make_hf_dir(tmp_path / kind, base_bpe, LLAMA3_SPLIT, False, True, "<|begin_of_text|>", "<|eot_id|>",
                          LLAMA3_TEMPLATE)
    else:
        ref = make_hf_dir(tmp_path / kind, base_bpe, QWEN2_SPLIT, True, False, None, "<|im_end|>",
                          "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    chunks = eval_text()
    assert sum(len(c.encode()) for c in chunks) >= 200_000
    compare_chunks(tmp_path, tmp_path / kind, chunks, lambda s: ref.encode(s).ids)
    info = run_tool("info", "--model", tmp_path / kind)
    assert info["pre"] == ("llama-bpe" if kind == "llama3" else "qwen2")
    assert info["add_bos"] == (kind == "llama3")
    f = tmp_path / "rt.txt"
    text = "".join(chunks)
    if kind == "qwen2":  # its NFC normalizer makes encode lossy on decomposed text
        text = unicodedata.normalize("NFC", text)
    f.write_bytes(text.encode())
    assert run_tool("roundtrip", "--model", tmp_path / kind, "--file", f)["ok"]


def test_llama3_chat_matches_hf(tmp_path, base_bpe):
    from transformers import AutoTokenizer

    make_hf_dir(tmp_path / "l3", base_bpe, LLAMA3_SPLIT, False, True, "<|begin_of_text|>", "<|eot_id|>",
                LLAMA3_TEMPLATE)
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "l3"))
    for msgs in CONVERSATIONS:
        f = tmp_path / "m.json"
        f.write_text(json.dumps(msgs))
        r = run_tool("chat", "--model", tmp_path / "l3", "--messages-json", f)
        assert r["format"] == "llama3"
        assert r["text"] == hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
