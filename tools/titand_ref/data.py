"""Corpus handling for TPTT training/eval: file listing, a fixed held-out split, token streams, batches.

Split: a file is held out iff int(sha1(relative path)[:8], 16) % 1000 < 1000 * heldout_frac, where the path
is relative to its corpus directory prefixed by the directory's name ("python-doc/os.rst.txt"): the split
depends only on file names, never on the seed or the file order.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPORA = [REPO / ".cache" / "corpus" / "python-doc", REPO / ".cache" / "corpus" / "linux-doc"]
TEXT_SUFFIXES = (".rst", ".txt")


def list_files(sources) -> list[tuple[str, Path]]:
    """sources: directories (recursively, *.rst / *.txt only) or files -> sorted [(key, path)]."""
    out = []
    for src in map(Path, sources):
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file() and p.name.endswith(TEXT_SUFFIXES):
                    out.append((f"{src.name}/{p.relative_to(src).as_posix()}", p))
        elif src.is_file():
            out.append((src.name, src))
        else:
            raise FileNotFoundError(f"corpus source {src} does not exist")
    return sorted(out)


def is_heldout(key: str, heldout_frac: float) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 1000 < int(round(1000 * heldout_frac))


def split(files, heldout_frac: float = 0.05):
    train = [f for f in files if not is_heldout(f[0], heldout_frac)]
    held = [f for f in files if is_heldout(f[0], heldout_frac)]
    return train, held


def token_stream(tok, files, max_tokens: int, seed: int = 0, cache_dir: Path | None = None) -> np.ndarray:
    """Concatenates tokenised files (shuffled by seed, EOS between files) until max_tokens -> int32 [N]."""
    files = list(files)
    random.Random(seed).shuffle(files)
    key = hashlib.sha1(("|".join(k for k, _ in files) + f"|{max_tokens}|{tok.name_or_path}").encode()).hexdigest()[:16]
    cache = None if cache_dir is None else Path(cache_dir) / f"tokens-{key}.npy"
    if cache is not None and cache.exists():
        return np.load(cache)
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    parts, n = [], 0
    for _, path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        ids = tok(text).input_ids + [eos]
        parts.append(np.asarray(ids, dtype=np.int32))
        n += len(ids)
        if n >= max_tokens:
            break
    stream = np.concatenate(parts)[:max_tokens] if parts else np.zeros(0, dtype=np.int32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, stream)
    return stream


class RandomWindows:
    """Batches [B, L] of windows drawn uniformly from a token stream (seeded)."""

    def __init__(self, stream: np.ndarray, length: int, batch: int, seed: int):
        if len(stream) <= length:
            raise ValueError(f"token stream of {len(stream)} tokens is too short for windows of {length}")
        self.stream, self.length, self.batch = torch.from_numpy(stream.astype(np.int64)), length, batch
        self.gen = torch.Generator().manual_seed(seed)

    def __next__(self) -> torch.Tensor:
        starts = torch.randint(0, len(self.stream) - self.length, (self.batch,), generator=self.gen)
        return torch.stack([self.stream[s:s + self.length] for s in starts.tolist()])

    def __iter__(self):
        return self


def fixed_windows(stream: np.ndarray, length: int, count: int) -> list[torch.Tensor]:
    """The first `count` non-overlapping windows [1, length] of a stream (the held-out eval set)."""
    n = min(count, len(stream) // length)
    t = torch.from_numpy(stream.astype(np.int64))
    return [t[i * length:(i + 1) * length].unsqueeze(0) for i in range(n)]
