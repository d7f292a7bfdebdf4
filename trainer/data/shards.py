"""Token shards: one flat int32 token stream per (stream, split), documents separated by eos,
with the document start offsets beside it. Training windows of any length are cut from the
flat stream at load time (packing), so one preparation serves every context length.

    shards/<stream>_<split>.npy        int32 tokens
    shards/<stream>_<split>.docs.npy   int64 start offset of each document
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from scaling import atomic
from scaling.errors import ConfigError


def write_shard(shard_dir: Path, name: str, docs: list[list[int]]) -> dict:
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    if lengths.sum() == 0:
        raise ConfigError("no tokens to write: the corpus is empty", field=name)
    flat = np.fromiter((t for d in docs for t in d), dtype=np.int32, count=int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    atomic.write_with(shard_dir / f"{name}.npy", lambda p: _save(p, flat))
    atomic.write_with(shard_dir / f"{name}.docs.npy", lambda p: _save(p, offsets))
    return {"tokens": int(flat.size), "documents": int(len(docs)), "sha256": hashlib.sha256(flat.tobytes()).hexdigest()}


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def load_shard(shard_dir: str | Path, name: str) -> np.ndarray:
    path = Path(shard_dir) / f"{name}.npy"
    if not path.is_file():
        raise ConfigError("token shard not found (run `scaling data synth` or `scaling data prepare`)", source=str(path))
    return np.load(path, mmap_mode="r")


def load_docs(shard_dir: str | Path, name: str) -> np.ndarray:
    return np.load(Path(shard_dir) / f"{name}.docs.npy")
