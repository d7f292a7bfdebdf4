"""Audio files -> deduplicated units, one JSONL line per file, resumable.

Output lines use SlamKit's ``features.jsonl`` schema (what ``scaling data prepare`` reads):
    {"file_name": "<path as listed>", "units": [int, ...], "duration": [frames, ...]}
``duration`` is the run length of each deduplicated unit in frames of 1/frame_rate s (40 ms at 25 Hz).

Lines are appended in the order of the file list, a chunk of files at a time, and fsynced; a rerun skips
the files already in the output (a torn last line left by a kill is dropped first). An exclusive lock
(``<out>.lock``) stops a second extraction into the same file, whose lines would interleave.

On a cluster, ``shard=(i, N)`` takes files ``i, i+N, i+2N, ...`` of the list into ``<stem>.<i>-of-<N><suffix>``
beside ``out``, and :func:`merge_shards` interleaves the N outputs back into ``out``: the same lines, in
the same order, as one extraction over the whole list.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError
from scaling.textio import decode, read_text
from trainer.units.dedup import dedup
from trainer.units.hubert import SAMPLE_RATE, HubertExtractor, load_audio
from trainer.units.kmeans import KMeansQuantizer

AUDIO_EXTS = (".flac", ".wav", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
EXPECTED_FRAME_RATE = 25.0  # trainer.data.interleave.FRAME_S = 0.04


def list_audio(src: str | Path) -> list[str]:
    """A folder (searched recursively for audio files, sorted) or a text file with one path per line
    (relative paths are taken relative to the list file)."""
    src = Path(src)
    if src.is_dir():
        files = sorted(str(p) for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file())
        if not files:
            raise ConfigError(f"no audio files ({', '.join(AUDIO_EXTS)}) in the folder", source=str(src))
        return files
    if src.is_file():
        if src.suffix.lower() in AUDIO_EXTS:
            return [str(src)]
        files = []
        for i, line in enumerate(read_text(src, what="file list").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line)
            files.append(str(p if p.is_absolute() else src.parent / p))
        if not files:
            raise ConfigError("the file list is empty", source=str(src))
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise ConfigError(f"{len(missing)} listed audio file(s) not found, first {missing[0]!r}", source=str(src))
        return files
    raise ConfigError("audio folder or file list not found", source=str(src))


def is_dataset(src: str | Path) -> bool:
    """A Hugging Face ``datasets`` folder (``save_to_disk``)."""
    p = Path(src)
    return p.is_dir() and (p / "state.json").is_file()


def dataset_audio(src: str | Path) -> tuple[list[str], callable]:
    """The audio rows of a ``datasets`` folder: (names, load(name) -> waveform). A row's name is its
    ``file_name`` or ``id`` column, else its audio's ``path``, else ``row<i>``; the ``audio`` column holds
    encoded bytes (``Audio(decode=False)``, read with soundfile) or a decoded ``{"array", "sampling_rate"}``."""
    import io

    try:
        import datasets
    except ImportError:
        raise ConfigError("reading a datasets folder needs `datasets`: pip install 'speech-scaling[data]'", source=str(src)) from None
    ds = datasets.load_from_disk(str(src))
    if isinstance(ds, datasets.DatasetDict):
        raise ConfigError(f"a DatasetDict with splits {list(ds)}: give the folder of one split", source=str(src))
    if "audio" not in ds.column_names:
        raise ConfigError("the dataset has no 'audio' column", source=str(src), field="audio", value=ds.column_names)
    if isinstance(ds.features["audio"], datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))  # soundfile decodes; no torchcodec needed
    meta = [c for c in ("file_name", "id") if c in ds.column_names][:1]
    names = []
    for i, row in enumerate(ds.select_columns(meta + ["audio"]).with_format("arrow").iter(batch_size=256)):
        for k, r in enumerate(row.to_pylist()):
            a = r["audio"] or {}
            names.append(str(r[meta[0]]) if meta else str(a.get("path") or f"row{i * 256 + k}"))
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError("two rows share a name; names identify utterances", source=str(src), field=meta[0] if meta else "audio",
                          value=dup)
    index = {n: i for i, n in enumerate(names)}

    def load(name: str) -> np.ndarray:
        import soundfile as sf

        a = ds[index[name]]["audio"]
        where = f"{src} row {index[name]}"
        if a.get("array") is not None:
            wav, sr = np.asarray(a["array"], dtype=np.float32), int(a["sampling_rate"])
            wav = wav.mean(axis=1) if wav.ndim == 2 else wav
        elif a.get("bytes") is not None:
            try:
                wav, sr = sf.read(io.BytesIO(a["bytes"]), dtype="float32", always_2d=True)
            except Exception as e:
                raise ConfigError(f"cannot read audio ({type(e).__name__}: {str(e)[:200]})", source=where) from None
            wav = wav.mean(axis=1)
        elif a.get("path"):
            return load_audio(a["path"])
        else:
            raise ConfigError("the audio cell has no array, bytes or path", source=where, field="audio")
        return _resampled(wav, sr, where)

    return names, load


def _resampled(wav: np.ndarray, sr: int, where: str) -> np.ndarray:
    import math

    from scipy.signal import resample_poly

    if wav.size == 0:
        raise ConfigError("the audio is empty", source=where)
    if sr != SAMPLE_RATE:
        g = math.gcd(int(sr), SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, int(sr) // g)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _done_files(out: Path) -> set[str]:
    """File names already in the output; truncates a torn last line so appends stay valid."""
    if not out.is_file():
        return set()
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    done = set()
    # every complete line is checked before the torn one is cut: a file that is not ours is left as it was
    for i, line in enumerate(decode(data[:keep], out, field="--out").splitlines(), 1):
        if not line.strip():
            continue
        try:
            done.add(json.loads(line)["file_name"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"line {i} of the existing output is not a features line; move the file away",
                              source=str(out), field="--out") from None
    if keep < len(data):
        with open(out, "r+b") as fh:
            fh.truncate(keep)
    return done


def _batches(items: list[tuple[str, np.ndarray]], max_samples: int):
    batch, longest = [], 0
    for item in items:
        n = len(item[1])
        if batch and max(longest, n) * (len(batch) + 1) > max_samples:
            yield batch
            batch, longest = [], 0
        batch.append(item)
        longest = max(longest, n)
    if batch:
        yield batch


def shard_output(out: str | Path, shard: tuple[int, int]) -> Path:
    """Where shard ``i`` of ``N`` writes: ``features.jsonl`` -> ``features.00003-of-00016.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{shard[0]:05d}-of-{shard[1]:05d}{out.suffix}")


@contextlib.contextmanager
def locked(out: Path):
    """Hold an exclusive lock on ``out`` (through ``<out>.lock``) or fail at once, naming the holder."""
    lock = out.with_name(out.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ConfigError(f"another extraction is writing this file (lock held by {holder}); two writers would "
                              "interleave their lines. Wait for it, or give each job its own --out or --shard",
                              source=str(out)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_shards(files: list[str], out: str | Path, n_shards: int) -> int:
    """Interleave the N shard outputs into ``out`` in file-list order (streaming, atomic); returns lines."""
    from scaling import atomic

    out = Path(out)
    paths = [shard_output(out, (i, n_shards)) for i in range(n_shards)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} shard output(s) missing (first {missing[0]}): run those --shard jobs first",
                          source=str(out))

    def write(tmp: Path) -> None:
        handles = [open(p, "rb") for p in paths]
        try:
            with open(tmp, "wb") as dst:
                for k, f in enumerate(files):
                    line = handles[k % n_shards].readline()
                    name = json.loads(line).get("file_name") if line.strip() else None
                    if name != f:
                        raise ConfigError(f"shard {k % n_shards}/{n_shards} has {name!r} where {f!r} (file {k} of the "
                                          "list) belongs: it is unfinished or was made from another list; rerun that "
                                          "shard", source=str(paths[k % n_shards]))
                    dst.write(line)
        finally:
            for h in handles:
                h.close()

    with locked(out):
        atomic.write_with(out, write)
    return len(files)


def extract_units(files: list[str], out: str | Path, extractor: HubertExtractor, quantizer: KMeansQuantizer, *,
                  batch_seconds: float = 120.0, chunk_files: int = 64, log=print,
                  shard: tuple[int, int] | None = None, load=load_audio) -> dict:
    """Units for every file not yet in ``out`` (with ``shard``: files ``i::N`` into :func:`shard_output`);
    ``load(name)`` reads a waveform (a file by default; :func:`dataset_audio` gives one for dataset rows).
    Returns counts {"files", "skipped", "seconds"}."""
    out = Path(out) if shard is None else shard_output(out, shard)
    if shard is not None:
        files = list(files)[shard[0]::shard[1]]
    if quantizer.dim != extractor.hidden_size:
        raise ConfigError(f"centroids have dimension {quantizer.dim} but the HuBERT layer has {extractor.hidden_size}",
                          source=quantizer.source, field="centroids", value=quantizer.dim)
    if abs(extractor.frame_rate - EXPECTED_FRAME_RATE) > 1e-6:
        raise ConfigError(f"the model makes {extractor.frame_rate:g} frames/s; durations and word alignment assume "
                          f"{EXPECTED_FRAME_RATE:g} (40 ms frames, as mHuBERT-25Hz)", source=extractor.source,
                          field="conv_stride", value=extractor.frame_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out):
        return _extract(files, out, extractor, quantizer, batch_seconds, chunk_files, log, load)


def _extract(files, out: Path, extractor, quantizer, batch_seconds: float, chunk_files: int, log, load) -> dict:
    done = _done_files(out)
    todo = [f for f in dict.fromkeys(files) if f not in done]
    t0, n = time.time(), 0
    max_samples = int(batch_seconds * SAMPLE_RATE)
    fh = None  # opened on the first finished file: an error before that leaves no output behind
    try:
        for c in range(0, len(todo), chunk_files):
            chunk = [(f, load(f)) for f in todo[c:c + chunk_files]]
            for f, w in chunk:
                if len(w) < 400:
                    raise ConfigError("audio shorter than one HuBERT frame (25 ms)", source=f, value=f"{len(w)} samples")
            lines = {}
            for batch in _batches(sorted(chunk, key=lambda it: len(it[1])), max_samples):  # similar lengths: little padding
                feats = extractor.features([w for _, w in batch])
                for (f, _), x in zip(batch, feats):
                    units, durations = dedup(quantizer(x))
                    lines[f] = json.dumps({"file_name": f, "units": units.tolist(), "duration": durations.tolist()}) + "\n"
            if fh is None:
                fh = open(out, "a", encoding="utf-8")
            fh.writelines(lines[f] for f, _ in chunk)  # list order: shard outputs merge back into one run's file
            fh.flush()
            os.fsync(fh.fileno())
            n += len(chunk)
            if log:
                log(f"{len(done) + n}/{len(done) + len(todo)} files, {time.time() - t0:.1f} s")
    finally:
        if fh is not None:
            fh.close()
    return {"files": n, "skipped": len(files) - len(todo), "seconds": round(time.time() - t0, 2)}
