"""Speed of `scaling data prepare` on ~1M spoken words (+ ~1M words of text), one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_prepare.py [--words 1000000] [--keep DIR]

Generates SlamKit-format features.jsonl (units + 40 ms run lengths), one JSONL of alignments and a text
JSONL, trains a small BPE as "the given tokenizer", then times `prepare_real` alone (the requirement:
under 60 s for 1M words on one core) and prints words/s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_corpus(root: Path, n_words: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lexicon = [("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9)))) for _ in range(5000)]
    feats, aligns, total = [], [], 0
    k = 0
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
        feats.append({"file_name": f"audio/utt{k}.flac", "units": raw[starts].tolist(), "duration": dur.tolist()})
        aligns.append({"file_name": f"utt{k}.flac",
                       "aligned_text": [[" " + w, round(float(bounds[i]), 3), round(float(bounds[i + 1]), 3)] for i, w in enumerate(words)]})
        total += n
        k += 1
    with open(root / "features.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in feats)
    with open(root / "alignments.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in aligns)
    texts, tw = [], 0
    while tw < n_words:
        n = int(rng.integers(50, 300))
        texts.append(" ".join(lexicon[i] for i in rng.integers(0, len(lexicon), size=n)) + ".")
        tw += n
    with open(root / "text.jsonl", "w") as fh:
        fh.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    from trainer.data.tokenizer import train_text_tokenizer

    train_text_tokenizer(texts[:500], vocab_size=2000).save_pretrained(str(root / "tokenizer"))
    return {"utterances": len(feats), "speech_words": total, "text_words": tw}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=1_000_000)
    ap.add_argument("--keep", help="keep the generated corpus and output here")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.time()
        info = make_corpus(root, args.words)
        print(f"generated {info} in {time.time() - t:.1f} s (not timed)")
        from trainer.data.prepare import prepare_real

        t = time.time()
        m = prepare_real(root / "out", features=root / "features.jsonl", alignments=root / "alignments.jsonl",
                         text=root / "text.jsonl", tokenizer=root / "tokenizer", seed=0)
        dt = time.time() - t
        toks = sum(v["tokens"] for v in m["tokens"].values())
        print(f"prepare: {info['speech_words']:,} spoken + {info['text_words']:,} text words, {toks:,} tokens "
              f"in {dt:.1f} s = {info['speech_words'] / dt:,.0f} spoken words/s "
              f"({(info['speech_words'] + info['text_words']) / dt:,.0f} words/s in all); "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        print("speech fractions (train):", m["speech_fractions"]["train"])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
