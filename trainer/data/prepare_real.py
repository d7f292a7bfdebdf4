"""The real-data builder, streaming: `scaling data prepare --features F [--alignments A] [--text T] --tokenizer DIR --out OUT`.

Inputs (readers in :mod:`trainer.data.sources`, record formats in :mod:`trainer.data.ingest`): one or more
speech sources (SlamKit features/tokens JSONL, our schema, parquet or Hugging Face ``datasets`` with unit
columns), optional word alignments, optional text sources, and a text tokenizer folder. Output: a format-2
data folder (:mod:`scaling.datadir`) with numbered shard parts per stream and split.

Three steps, each bounded in memory whatever the corpus size:
  1. plan: one pass over the ids only (8 bytes per utterance): duplicate ids are an error (or dropped
     with a count under ``dedup``), and each source is split into train and val by utterance id: the
     ``max(1, round(val_fraction x n))`` ids with the smallest seeded hash go to val, so an utterance is
     in one split only, whatever the file order or the machine.
  2. work items: source ``s``'s records ``[c*chunk, (c+1)*chunk)`` are item ``ss-cccccc``; an item is read,
     checked, tokenised, interleaved and shuffled on its own (its random draws are seeded by (seed, s, c)),
     and written as part ``ss-cccccc`` of every stream and split it has, then marked done. An item's output
     depends on nothing else, so ``workers`` processes, ``shard=(i, N)`` on N machines (items
     ``k % N == i``), and a rerun after a kill (done items are skipped) all give the same parts.
  3. merge: the parts' index, the sources and checks reports, the tokenizers and ``data.json`` (written
     last); the work folder ``.<out>.prepare`` is then renamed onto ``out``.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from scaling import atomic
from scaling.datadir import (MANIFEST, N_UNITS, SPEECH_TOKENIZER, SPLITS, STREAMS, TEXT_TOKENIZER, check_n_units,
                             fingerprint, make_manifest, shard_name, vocab_block, vocab_sha, write_manifest)
from scaling.errors import ConfigError
from trainer.data import ingest, shards
from trainer.data.mixture import mixture_report
from trainer.data.ingest import parse_speech, parse_text
from trainer.data.sources import Source
from trainer.data.streams import build_streams
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, load_tokenizer

CHUNK = 2000  # records per work item: bounds a worker's memory, and is the unit of resuming
MAX_UNALIGNED = 0.5  # warn when an aligned utterance has more of its audio outside words than this


def _mix(h: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``h + salt``: a seeded, uniform 64-bit value per id (vectorised)."""
    with np.errstate(over="ignore"):
        z = np.asarray(h, dtype=np.uint64) + np.uint64(salt % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _as_sources(arg, kind: str, weights: dict | None) -> list[Source]:
    if arg is None:
        return []
    items = arg if isinstance(arg, (list, tuple)) else [arg]
    from trainer.data.sources import parse_source

    out = [a if isinstance(a, Source) else parse_source(str(a), kind, weights, None if len(items) > 1 else kind)
           for a in items]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{kind} sources need distinct names (NAME=PATH)", field=kind, value=names)
    return out


class _Job:
    """Everything a work item needs (picklable: sent once to each worker process)."""

    def __init__(self, speech: list[Source], text: list[Source], tokenizer: Path, alignments, seed: int, ratio: float,
                 lam: float, chunk: int, max_unaligned: float, n_units: int = N_UNITS):
        self.sources = speech + text
        self.n_units = n_units
        self.tokenizer, self.seed, self.ratio, self.lam, self.chunk = tokenizer, seed, ratio, lam, chunk
        self.max_unaligned = max_unaligned
        self.aligns = None if alignments is None else ingest.AlignmentIndex(alignments)
        self._tok = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tok"} | {"_tok": None}

    def tokenizer_and_vocab(self):
        if self._tok is None:
            tok = load_tokenizer(self.tokenizer)
            try:
                add_speech_tokens(tok, self.n_units)
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"the tokenizer cannot take the {self.n_units + 2} speech tokens ({type(e).__name__}: "
                                  f"{e})", source=str(self.tokenizer), field="added_tokens") from None
            vocab = SpeechVocab.of(tok, source=str(self.tokenizer))
            if vocab.n_units != self.n_units:
                raise ConfigError(f"the tokenizer already holds {vocab.n_units} unit tokens, not the {self.n_units} asked "
                                  "for (--units)", source=str(self.tokenizer), field="added_tokens", value=vocab.n_units)
            self._tok = (tok, vocab)
        return self._tok


def item_name(s: int, c: int) -> str:
    return f"{s:02d}-{c:06d}"


# -- 1. the plan ------------------------------------------------------------------------------------
def _plan(job: _Job, val_fraction: float, dedup: bool) -> dict:
    """Per source: its record count and a split code per record (0 train, 1 val, -1 dropped duplicate)."""
    plan = {"splits": [], "dropped": 0}
    hashes = []
    for s, src in enumerate(job.sources):
        if src.kind == "speech":
            h = np.fromiter((ingest.key_hash(k if k is not None else f"#record {i}") for i, k in enumerate(src.keys())),
                            dtype=np.uint64)
        else:
            h = _mix(np.arange(sum(1 for _ in src.records()), dtype=np.uint64), 1_000_003 * (s + 1))
        if h.size == 0:
            raise ConfigError(f"the {src.kind} input is empty", source=src.spec)
        hashes.append(h)
    codes = [np.zeros(h.size, dtype=np.int8) for h in hashes]
    speech = [s for s, src in enumerate(job.sources) if src.kind == "speech"]
    if speech:
        allh = np.concatenate([hashes[s] for s in speech])
        _, first, counts = np.unique(allh, return_index=True, return_counts=True)
        if (counts > 1).any():
            keep = np.zeros(allh.size, dtype=bool)
            keep[first] = True
            if not dedup:
                first_repeat = int(np.flatnonzero(~keep)[0])  # reported in file order
                raise _duplicate_error(job, speech, hashes, allh[first_repeat], int((counts - 1).sum()))
            starts = np.cumsum([0] + [hashes[s].size for s in speech])
            for k, s in enumerate(speech):
                codes[s][~keep[starts[k]:starts[k + 1]]] = -1
            plan["dropped"] = int((~keep).sum())
        if job.aligns is not None and not any(job.aligns.contains(hashes[s]).any() for s in speech):
            raise ConfigError(f"no alignment matches any utterance by file stem (utterances e.g. "
                              f"{next(iter(job.sources[speech[0]].keys()))!r})", source=str(job.aligns.path), field="file_name")
    for s, src in enumerate(job.sources):
        kept = np.flatnonzero(codes[s] == 0)
        if kept.size < 2:
            raise ConfigError(f"the {src.kind} source '{src.name}' has {kept.size} document(s); train and val need "
                              "at least one each", source=src.spec, value=int(kept.size))
        n_val = min(kept.size - 1, max(1, int(round(val_fraction * kept.size))))
        u = _mix(hashes[s][kept], job.seed * 7919 + s)
        codes[s][kept[np.argpartition(u, n_val - 1)[:n_val]]] = 1
        plan["splits"].append(codes[s])
    return plan


def _duplicate_error(job, speech, hashes, h, extra) -> ConfigError:
    seen = []
    for s in speech:
        for (src, where, _), key in zip(job.sources[s].records(), job.sources[s].keys()):
            if key is not None and ingest.key_hash(key) == h:
                seen.append((key, src, where))
                if len(seen) == 2:
                    break
        if len(seen) == 2:
            break
    (key, src1, where1), (_, src2, where2) = seen
    return ConfigError(f"utterance id {key!r} appears more than once ({src1} {where1} and {src2} {where2}; {extra} "
                       "duplicate record(s) in all): the same utterance could land in train and val. Fix the input, "
                       "or pass --dedup to keep each id's first record and drop the rest", source=src2, field="file_name",
                       value=key)


# -- 2. work items ----------------------------------------------------------------------------------
def _repeats(job: _Job, src: Source, key: str) -> int:
    """How many times a training document of ``src`` is used: floor(weight), plus one with the fractional
    part's probability (drawn from the id, so every machine agrees)."""
    w = src.weight
    if w == int(w):
        return int(w)
    u = float(_mix(np.array([ingest.key_hash(key)], dtype=np.uint64), job.seed + 104729)[0]) / 2.0**64
    return int(w) + (u < w - int(w))


def run_item(job: _Job, s: int, c: int, records: list, codes: np.ndarray, shard_dir: Path) -> dict:
    """Read, check, tokenise and write one work item; returns its done record."""
    t0 = time.time()
    src = job.sources[s]
    tok, vocab = job.tokenizer_and_vocab()
    name = item_name(s, c)
    per_split = {sp: [] for sp in SPLITS}
    checks = {"aligned": 0, "unaligned_over": 0, "first_unaligned": None, "without_alignment": 0,
              "audio_s": 0.0, "outside_s": 0.0}
    for (path, where, raw), code in zip(records, codes):
        if code < 0:
            continue
        split = SPLITS[int(code)]
        if src.kind == "text":
            doc = parse_text(path, where, raw)
            if doc is not None:
                per_split[split].append(doc)
            continue
        u = parse_speech(path, where, raw, job.n_units)
        if job.aligns is not None and not u.get("words"):
            a = job.aligns.get(u["id"])
            if a is None:
                checks["without_alignment"] += 1
            else:
                if u["durations"] is None:
                    raise ConfigError("alignments need unit durations, but these features come from a tokens.jsonl "
                                      "(audio_repr has no durations); pass the features.jsonl (units + duration) "
                                      "instead, or drop --alignments to prepare the speech-only stream",
                                      source=u["source"], field="audio_repr")
                u.update(words=a["words"], starts=a["starts"], ends=a["ends"], align_source=a["source"])
        if u.get("words"):
            covered = ingest.check_alignment(u)
            seconds = float(np.sum(u["durations"])) * ingest.FRAME_S
            checks["aligned"] += 1
            checks["audio_s"] += seconds
            checks["outside_s"] += seconds * (1.0 - covered)
            if 1.0 - covered > job.max_unaligned:
                checks["unaligned_over"] += 1
                checks["first_unaligned"] = checks["first_unaligned"] or f"{u['id']} ({u.get('align_source', path)})"
        n = 1 if split == "val" else _repeats(job, src, u["id"])
        per_split[split].extend([u] * n)
    parts, stats = {}, {}
    for k, split in enumerate(SPLITS):
        items = per_split[split]
        rng = np.random.default_rng([job.seed, s, c, k])
        if src.kind == "text":
            docs, st = build_streams(items, [], tok, vocab, rng, job.ratio, job.lam) if items else ({}, {})
            docs.pop("speech", None)
            st = {"documents": len(items)}
        else:
            docs, st = build_streams([], items, tok, vocab, rng, job.ratio, job.lam) if items else ({}, {})
        stats[split] = st
        for stream in STREAMS:
            d = docs.get(stream) or []
            order = np.random.default_rng([job.seed, 7, s, c, k]).permutation(len(d))
            entry = shards.write_part(shard_dir, stream, split, name, [d[i] for i in order])
            if entry is not None:
                parts[shard_name(stream, split)] = entry
    return {"item": name, "records": len(records), "parts": parts, "stats": stats, "checks": checks,
            "seconds": round(time.time() - t0, 3)}


_WORKER: dict = {}


def _worker_init(job: _Job) -> None:
    _WORKER["job"] = job


def _worker_run(s, c, records, codes, shard_dir, done_path) -> str:
    done = run_item(_WORKER["job"], s, c, records, codes, shard_dir)
    atomic.write_json(done_path, done)
    return done["item"]


def _chunks(src: Source, chunk: int):
    batch, c = [], 0
    for rec in src.records():
        batch.append(rec)
        if len(batch) == chunk:
            yield c, batch
            batch, c = [], c + 1
    if batch:
        yield c, batch


def _run_items(job: _Job, plan: dict, work: Path, *, workers: int, shard: tuple[int, int] | None, log) -> int:
    """Process every item not yet done (those of ``shard`` only); returns how many were processed now."""
    done_dir, shard_dir = work / "done", work / "shards"
    done_dir.mkdir(parents=True, exist_ok=True)
    pool, pending, n_run, k = None, [], 0, -1
    if workers > 1:
        import multiprocessing as mp

        # fork (Linux): workers inherit the imported modules and the loaded tokenizer instead of paying for both
        # again; the Rust tokenizer disables its own threads after a fork, so nothing can deadlock
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        pool = mp.get_context(method).Pool(workers, initializer=_worker_init, initargs=(job,))
    _worker_init(job)
    t0 = time.time()
    try:
        for s, src in enumerate(job.sources):
            codes = plan["splits"][s]
            for c, records in _chunks(src, job.chunk):
                k += 1
                if shard is not None and k % shard[1] != shard[0]:
                    continue
                done_path = done_dir / f"{item_name(s, c)}.json"
                if done_path.is_file():
                    continue
                args = (s, c, records, codes[c * job.chunk:c * job.chunk + len(records)], shard_dir, done_path)
                if pool is None:
                    _worker_run(*args)
                else:
                    pending.append(pool.apply_async(_worker_run, args))
                    while len(pending) >= 2 * workers:  # bounded read-ahead: memory stays a few chunks
                        pending.pop(0).get()
                n_run += 1
                if log and n_run % 10 == 0:
                    log(f"  {n_run} work items done this pass ({time.time() - t0:.0f} s)")
        for p in pending:
            p.get()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return n_run


# -- 3. merge ---------------------------------------------------------------------------------------
def _merge(job: _Job, plan: dict, work: Path, *, meta: dict, log) -> dict:
    parts = {shard_name(st, sp): [] for sp in SPLITS for st in STREAMS}
    fr = {sp: {"speech_words": 0, "words": 0, "speech_tokens": 0, "tokens": 0, "aligned_utterances": 0, "utterances": 0}
          for sp in SPLITS}
    checks = {"aligned": 0, "unaligned_over": 0, "first_unaligned": None, "without_alignment": 0, "audio_s": 0.0,
              "outside_s": 0.0}
    sources, missing = {}, []
    for s, src in enumerate(job.sources):
        codes = plan["splits"][s]
        rep = {"kind": src.kind, "input": src.spec, "weight": src.weight, "records": int(codes.size),
               "train": int((codes == 0).sum()), "val": int((codes == 1).sum()), "dropped_duplicates": int((codes < 0).sum()),
               "tokens": {}}
        for c in range(math.ceil(codes.size / job.chunk)):
            p = work / "done" / f"{item_name(s, c)}.json"
            if not p.is_file():
                missing.append(item_name(s, c))
                continue
            done = json.loads(p.read_text(encoding="utf-8"))
            for name, entry in done["parts"].items():
                parts[name].append(entry)
                rep["tokens"][name] = rep["tokens"].get(name, 0) + entry["tokens"]
            for sp, st in done["stats"].items():
                for key in fr[sp]:
                    fr[sp][key] += st.get(key, 0)
            for key, v in done["checks"].items():
                checks[key] = (checks[key] or v) if key == "first_unaligned" else checks[key] + v
        sources[src.name] = rep
    if missing:
        raise ConfigError(f"{len(missing)} work item(s) are not done yet (first {missing[0]}): run the missing "
                          "`--shard i/N` jobs (or prepare without --shard) before merging", source=str(work))
    for src in job.sources:
        if not sources[src.name]["tokens"]:
            raise ConfigError(f"the {src.kind} source '{src.name}' gave no documents (every record is empty)", source=src.spec)
    counts, shas = {}, []
    for name, plist in parts.items():
        if plist:
            counts[name] = shards.index_stream(plist)
            shas.append(counts[name]["sha256"])
    for s, rep in sources.items():
        rep["share"] = {name: round(n / counts[name]["tokens"], 6) for name, n in rep["tokens"].items()}
    fractions = {sp: {"speech_word_fraction": f["speech_words"] / max(f["words"], 1),
                      "speech_token_fraction": f["speech_tokens"] / max(f["tokens"], 1),
                      "words": f["words"], "aligned_utterances": f["aligned_utterances"], "utterances": f["utterances"]}
                 for sp, f in fr.items()}
    outside = checks["outside_s"] / checks["audio_s"] if checks["audio_s"] else 0.0
    report = {"duplicates_dropped": plan["dropped"], "aligned_utterances": checks["aligned"],
              "without_alignment": checks["without_alignment"], "unaligned_threshold": job.max_unaligned,
              "utterances_mostly_unaligned": checks["unaligned_over"], "audio_share_outside_words": round(outside, 6)}
    if plan["dropped"]:
        log(f"warning: dropped {plan['dropped']} duplicate utterance record(s) (--dedup: each id's first record kept)")
    if checks["unaligned_over"]:
        log(f"warning: {checks['unaligned_over']} of {checks['aligned']} aligned utterances have more than "
            f"{job.max_unaligned:.0%} of their audio outside aligned words (first: {checks['first_unaligned']}); "
            f"{outside:.1%} of aligned audio in all. That audio reaches the speech stream only, never the interleaved one")
    if checks["without_alignment"]:
        log(f"note: {checks['without_alignment']} utterance(s) have no alignment: speech stream only")

    tok, vocab = job.tokenizer_and_vocab()
    for d in (TEXT_TOKENIZER, SPEECH_TOKENIZER):
        shutil.rmtree(work / d, ignore_errors=True)
    shutil.copytree(job.tokenizer, work / TEXT_TOKENIZER)
    text_tok = load_tokenizer(job.tokenizer)
    tok.save_pretrained(str(work / SPEECH_TOKENIZER))
    return make_manifest(
        seed=job.seed, tokens=counts, fingerprint=fingerprint(shas),
        vocab=vocab_block(len(text_tok), vocab.size, vocab.unit_offset, vocab.n_units),
        tokenizer_sha={TEXT_TOKENIZER: vocab_sha(text_tok.get_vocab()), SPEECH_TOKENIZER: vocab_sha(tok.get_vocab())},
        interleave={"ratio": job.ratio, "poisson_lambda": job.lam}, speech_fractions=fractions,
        mixture=mixture_report(counts), sources=sources, checks=report, **meta)


# -- the whole pass ---------------------------------------------------------------------------------
def _identity(job: _Job, **settings) -> dict:
    """What the work folder was made from: a rerun with other inputs or settings starts afresh."""
    def stat(spec: str):
        p = Path(spec)
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]

    return {"sources": [[s.name, s.kind, s.spec, s.weight, stat(s.spec)] for s in job.sources],
            "alignments": None if job.aligns is None else [str(job.aligns.path), stat(str(job.aligns.path))],
            "tokenizer": vocab_sha(job.tokenizer_and_vocab()[0].get_vocab()), "seed": job.seed, "ratio": job.ratio,
            "lam": job.lam, "chunk": job.chunk, "max_unaligned": job.max_unaligned, **settings}


def _recorded_identity(path: Path):
    """What a work folder's ``work.json`` says it was made from; None when it cannot be read (a torn or
    foreign file: the folder is then rebuilt rather than trusted)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def prepare_real(out: str | Path, *, features, tokenizer: str | Path, text=None, alignments: str | Path | None = None,
                 seed: int = 0, val_fraction: float = 0.02, ratio: float = 0.3, lam: float = 10.0,
                 weights: dict[str, float] | None = None, dedup: bool = False, max_unaligned: float = MAX_UNALIGNED,
                 chunk: int = CHUNK, workers: int = 1, shard: tuple[int, int] | None = None, merge_only: bool = False,
                 n_units: int = N_UNITS, log=_stderr) -> dict:
    """Prepare a real corpus into ``out`` (a format-2 data folder); returns its manifest.

    ``features`` / ``text``: one input or a list (``[NAME=]PATH`` strings or :class:`Source`); ``weights``:
    source name -> weight. ``shard=(i, N)`` processes items ``k % N == i`` only and returns
    ``{"items_run", "shard"}`` without merging; ``merge_only`` merges the items the shards wrote. ``n_units``:
    the unit inventory (the k-means size the features were extracted with; the tokenizer gets
    ``<Un0>``..``<Un{n_units-1}>``, ``<speech>``, ``<text>``). A failed
    input check removes the work folder (no half-written output); any other interruption (a kill, a full
    disk) leaves it, and the same call resumes where it stopped.
    """
    t0 = time.time()
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError("must be between 0 and 1", field="val_fraction", value=val_fraction)
    if chunk < 1 or workers < 1:
        raise ConfigError("chunk and workers must be >= 1", field="chunk" if chunk < 1 else "workers",
                          value=chunk if chunk < 1 else workers)
    if shard is not None and not (0 <= shard[0] < shard[1]):
        raise ConfigError("must be i/N with 0 <= i < N", field="shard", value=f"{shard[0]}/{shard[1]}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ConfigError("output exists and is not a prepared data folder; choose a new folder", source=str(out))
    speech = _as_sources(features, "speech", weights)
    texts = _as_sources(text, "text", weights)
    unknown = sorted(set(weights or {}) - {s.name for s in speech + texts})
    if unknown:
        raise ConfigError(f"weight for an unknown source; sources: {[s.name for s in speech + texts]}", field="weight",
                          value=unknown[0])
    tok_dir = Path(tokenizer)
    check_n_units(n_units, field="units")
    job = _Job(speech, texts, tok_dir, alignments, seed, ratio, lam, chunk, max_unaligned, n_units)
    job.tokenizer_and_vocab()  # a bad tokenizer fails before any reading

    work = out.with_name(f".{out.name}.prepare")
    ident = _identity(job, val_fraction=val_fraction, dedup=dedup)
    ident_path = work / "work.json"
    if ident_path.is_file() and _recorded_identity(ident_path) != ident:
        log(f"{work}: made from other inputs or settings (or its work.json is unreadable); starting afresh")
        shutil.rmtree(work)
    elif ident_path.is_file() and not merge_only:
        n_done = len(list((work / "done").glob("*.json"))) if (work / "done").is_dir() else 0
        log(f"resuming in {work}: {n_done} work item(s) already done")
    try:
        plan = _plan(job, val_fraction, dedup)
        if not ident_path.is_file():
            atomic.write_json(ident_path, ident)
        if merge_only:
            n_run = 0
        else:
            n_run = _run_items(job, plan, work, workers=workers, shard=shard, log=log)
        if shard is not None:
            return {"items_run": n_run, "shard": f"{shard[0]}/{shard[1]}", "work": str(work)}
        manifest = _merge(job, plan, work, log=log, meta={
            "source": {"features": [s.spec for s in speech], "alignments": None if alignments is None else str(alignments),
                       "text": [s.spec for s in texts] or None, "tokenizer": str(tok_dir), "val_fraction": val_fraction,
                       "chunk": chunk},
            "prepare_seconds": round(time.time() - t0, 2)})
        write_manifest(work, manifest)
        atomic.replace_dir(work, out)
        shutil.rmtree(out / "done", ignore_errors=True)  # the work records are not part of the data folder
        (out / "work.json").unlink(missing_ok=True)
    except ConfigError:
        if shard is None:  # bad input: no half-written output (other shards may still be writing otherwise)
            shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest
