"""`scaling data prepare` at two corpus sizes: peak memory, and the whole pass against the bare tokenizer pass.

    taskset -c 1 python benchmarks/bench_prepare.py            # 0.1M + 0.1M vs 0.4M + 0.4M words (short)
    taskset -c 1 python benchmarks/bench_prepare.py --full     # 0.5M + 0.5M vs 2M + 2M words (the acceptance)

For each size N: a SlamKit-format corpus of N spoken words (features.jsonl with units + 40 ms run lengths,
one alignments JSONL) and N words of text JSONL, and a small BPE as "the given tokenizer" (not timed). Each
size is prepared in a fresh subprocess that reports its own peak resident memory (ru_maxrss), so the two
peaks compare like for like; the larger size's subprocess then also times the bare tokenizer pass over
the same text (every text document and every transcript, in the same batches, same process), so the
ratio is taken on the same machine state; both are timed in CPU seconds of the process (robust on a
shared machine) and in wall seconds. One core: TOKENIZERS_PARALLELISM=false and OMP/RAYON threads
1 (pin the process with taskset as above).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ONE_CORE = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}


def make_corpus(root: Path, n_words: int, seed: int = 0) -> dict:
    """Streams the corpus to disk (the generator itself holds one utterance at a time)."""
    rng = np.random.default_rng(seed)
    lexicon = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9))) for _ in range(5000)]
    total = k = 0
    with open(root / "features.jsonl", "w") as ff, open(root / "alignments.jsonl", "w") as fa:
        while total < n_words:
            n = int(rng.integers(10, 60))
            words = [lexicon[i] for i in rng.integers(0, len(lexicon), size=n)]
            frames_per_word = rng.integers(5, 15, size=n)  # 0.2-0.6 s per word
            n_frames = int(frames_per_word.sum()) + 5
            raw = rng.integers(0, 500, size=n_frames)
            raw = np.where(rng.random(n_frames) < 0.35, np.roll(raw, 1), raw)  # some repeats
            starts = np.flatnonzero(np.concatenate([[True], raw[1:] != raw[:-1]]))
            dur = np.diff(np.concatenate([starts, [n_frames]]))
            bounds = np.concatenate([[0], np.cumsum(frames_per_word)]) * 0.04
            ff.write(json.dumps({"file_name": f"audio/utt{k}.flac", "units": raw[starts].tolist(), "duration": dur.tolist()}) + "\n")
            fa.write(json.dumps({"file_name": f"utt{k}.flac", "aligned_text": [
                [" " + w, round(float(bounds[i]), 3), round(float(bounds[i + 1]), 3)] for i, w in enumerate(words)]}) + "\n")
            total += n
            k += 1
    tw, sample = 0, []
    with open(root / "text.jsonl", "w") as ft:
        while tw < n_words:
            n = int(rng.integers(50, 300))
            t = " ".join(lexicon[i] for i in rng.integers(0, len(lexicon), size=n)) + "."
            ft.write(json.dumps({"text": t}) + "\n")
            if len(sample) < 500:
                sample.append(t)
            tw += n
    from trainer.data.tokenizer import train_text_tokenizer

    train_text_tokenizer(sample, vocab_size=2000).save_pretrained(str(root / "tokenizer"))
    return {"utterances": k, "speech_words": total, "text_words": tw}


def bare_tokenizer_pass(root: Path, chunk: int) -> float:
    """Seconds to tokenise the same text as the preparation (documents + transcripts), in its batch size,
    with the Rust tokenizer's ``encode_batch`` (the fastest call there is; the preparation makes the same one)."""
    from trainer.data.ingest import parse_text
    from trainer.data.sources import Source
    from trainer.data.tokenizer import load_tokenizer

    backend = load_tokenizer(root / "tokenizer").backend_tokenizer

    def tok(texts, add_special_tokens):
        return backend.encode_batch(texts, add_special_tokens=add_special_tokens)

    t, c = time.time(), time.process_time()
    batch = []
    for src, where, raw in Source("t", "text", str(root / "text.jsonl")).records():
        batch.append(parse_text(src, where, raw))
        if len(batch) == chunk:
            tok(batch, add_special_tokens=False)
            batch = []
    with open(root / "alignments.jsonl", "rb") as fh:
        for line in fh:
            batch.append(" ".join(w.strip() for w, _, _ in json.loads(line)["aligned_text"]))
            if len(batch) == chunk:
                tok(batch, add_special_tokens=False)
                batch = []
    if batch:
        tok(batch, add_special_tokens=False)
    return time.time() - t, time.process_time() - c


def child(root: Path, chunk: int, bare: bool) -> None:
    """One measured preparation (run in its own process)."""
    from trainer.data.prepare_real import prepare_real
    from trainer.data.tokenizer import load_tokenizer

    load_tokenizer(root / "tokenizer")  # imports transformers: not part of either pass
    t, c = time.time(), time.process_time()
    m = prepare_real(root / "out", features=root / "features.jsonl", alignments=root / "alignments.jsonl",
                     text=root / "text.jsonl", tokenizer=root / "tokenizer", seed=0, chunk=chunk, log=lambda s: None)
    whole, whole_cpu = time.time() - t, time.process_time() - c
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak of the preparation alone
    res = {"whole_s": whole, "whole_cpu": whole_cpu, "peak_mb": rss_mb, "tokens": sum(v["tokens"] for v in m["tokens"].values()),
           "fractions": m["speech_fractions"]["train"]}
    if bare:
        res["bare_s"], res["bare_cpu"] = bare_tokenizer_pass(root, chunk)
    print("RESULT " + json.dumps(res))


def measure(root: Path, n_words: int, chunk: int, bare: bool) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    t = time.time()
    info = make_corpus(root, n_words)
    print(f"  corpus of {n_words:,} + {n_words:,} words generated in {time.time() - t:.1f} s (not timed): {info}")
    cmd = [sys.executable, __file__, "--child", str(root), "--chunk", str(chunk)] + (["--bare"] if bare else [])
    proc = subprocess.run(cmd, env={**os.environ, **ONE_CORE, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    res = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {**info, **res}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="0.5M vs 2M words each of speech and text (the acceptance)")
    ap.add_argument("--small", type=int, default=100_000, help="words of speech and of text, smaller corpus")
    ap.add_argument("--large", type=int, default=400_000, help="words of speech and of text, larger corpus")
    ap.add_argument("--chunk", type=int, default=2000, help="records per work item")
    ap.add_argument("--keep", help="keep the corpora and outputs here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(Path(args.child), args.chunk, args.bare)
    small, large = (500_000, 2_000_000) if args.full else (args.small, args.large)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        a = measure(root / "small", small, args.chunk, bare=False)
        b = measure(root / "large", large, args.chunk, bare=True)
        for r in (a, b):
            print(f"prepare {r['speech_words']:,} spoken + {r['text_words']:,} text words: {r['tokens']:,} tokens in "
                  f"{r['whole_s']:.1f} s ({(r['speech_words'] + r['text_words']) / r['whole_s']:,.0f} words/s), "
                  f"peak memory {r['peak_mb']:.0f} MB")
        print(f"peak memory, large / small corpus: {b['peak_mb'] / a['peak_mb']:.2f}x "
              f"({b['speech_words'] / a['speech_words']:.1f}x the words; acceptance: within 1.5x)")
        print(f"whole pass / bare tokenizer pass over the same text (large corpus, same process), CPU time: "
              f"{b['whole_cpu']:.1f} s / {b['bare_cpu']:.1f} s = {b['whole_cpu'] / b['bare_cpu']:.2f}x (acceptance: under 3x); "
              f"wall: {b['whole_s']:.1f} s / {b['bare_s']:.1f} s = {b['whole_s'] / b['bare_s']:.2f}x")
        print("speech fractions (train, large):", b["fractions"])
        from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
        print("record:", write_record(
            "prepare", {"words_small": small, "words_large": large, "peak_mb_small": round(a["peak_mb"]),
                        "peak_mb_large": round(b["peak_mb"]), "cpu_s_large": round(b["whole_cpu"], 1),
                        "bare_cpu_s_large": round(b["bare_cpu"], 1), "ratio_to_bare": round(b["whole_cpu"] / b["bare_cpu"], 2)},
            title=f"real-data preparation, {small:,} vs {large:,} words per side",
            summary=f"peak {a['peak_mb']:.0f} MB vs {b['peak_mb']:.0f} MB; {b['whole_cpu']:.1f} CPU s, "
                    f"{b['whole_cpu'] / b['bare_cpu']:.2f}x the bare tokenizer pass"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
