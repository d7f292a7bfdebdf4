"""Token shards: the one writer of ``shards/`` (names and the reader are in :mod:`scaling.datadir`).

:func:`write_shard` / :func:`pack` write format-1 single files (the synthetic builder, whose fingerprint
must not change); :func:`write_part` / :func:`index_stream` write the numbered parts of format 2.

One flat int32 token stream per (stream, split), documents separated by eos, with the document start
offsets beside it. Training windows of any length are cut from the flat stream at load time
(packing), so one preparation serves every context length.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scaling import atomic
from scaling.datadir import SPLITS, STREAMS, fingerprint, shard_name, shard_sha256, stream_sha256
from scaling.errors import ConfigError


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def write_shard(shard_dir: Path, stream: str, split: str, docs) -> dict:
    """Write one stream's documents (lists or arrays of ids) as ``<stream>_<split>.npy`` + ``.docs.npy``;
    returns ``{"tokens", "documents", "sha256"}`` for data.json."""
    name = shard_name(stream, split)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    if lengths.sum() == 0:
        raise ConfigError("no tokens to write: the corpus is empty", field=name)
    flat = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    atomic.write_with(shard_dir / f"{name}.npy", lambda p: _save(p, flat))
    atomic.write_with(shard_dir / f"{name}.docs.npy", lambda p: _save(p, offsets))
    return {"tokens": int(flat.size), "documents": int(len(docs)), "sha256": shard_sha256(flat)}


def pack(shard_dir: Path, build, seed: int) -> tuple[dict, dict, str]:
    """Write every stream of every split: ``build(split, rng)`` returns (documents per stream, stats).

    Documents are shuffled per stream with a seeded permutation; returns (the ``tokens`` block of
    data.json, the stats per split, the fingerprint)."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    counts, stats, shas = {}, {}, []
    for k, split in enumerate(SPLITS):
        docs, stats[split] = build(split, np.random.default_rng([seed, k]))
        for stream in STREAMS:
            if stream not in docs:
                continue
            order = np.random.default_rng([seed, 7, k]).permutation(len(docs[stream]))
            info = write_shard(shard_dir, stream, split, [docs[stream][i] for i in order])
            counts[shard_name(stream, split)] = info
            shas.append(info["sha256"])
    return counts, stats, fingerprint(shas)


def write_part(shard_dir: Path, stream: str, split: str, part: str, docs) -> dict | None:
    """Write one numbered part of a format-2 stream (``shards/<stream>_<split>/<part>.npy`` + ``.docs.npy``);
    returns its index entry ``{"name", "tokens", "documents", "sha256"}``, or None for no documents."""
    if not docs:
        return None
    folder = shard_dir / shard_name(stream, split)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    flat = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    atomic.write_with(folder / f"{part}.npy", lambda p: _save(p, flat))
    atomic.write_with(folder / f"{part}.docs.npy", lambda p: _save(p, offsets))
    return {"name": part, "tokens": int(flat.size), "documents": int(len(docs)), "sha256": shard_sha256(flat)}


def index_stream(parts: list[dict]) -> dict:
    """The data.json entry of a format-2 stream from its parts (in reading order)."""
    return {"tokens": sum(p["tokens"] for p in parts), "documents": sum(p["documents"] for p in parts),
            "sha256": stream_sha256([p["sha256"] for p in parts]), "parts": parts}
