"""`scaling eval`: benchmarks on a checkpoint."""
from __future__ import annotations

from pathlib import Path


def _cmd_eval(args) -> int:
    from scaling import atomic
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.benchmarks import evaluate
    from trainer.model import load_model

    ckpt = Path(args.checkpoint)
    model = load_model(ckpt)
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    names = [b for b in args.benchmarks.split(",") if b]
    res = evaluate(model, tok, vocab, Path(args.data) / "benchmarks" if (Path(args.data) / "benchmarks").is_dir() else Path(args.data),
                   names, max_items=args.max_items, norm=args.norm, span=args.span)
    for k, v in res.items():
        print(f"{k:<10} {v:.4f}")
    if args.json:
        atomic.write_json(args.json, res)
    return 0


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint on likelihood benchmarks")
    e.add_argument("checkpoint", help="a model folder (config.json, safetensors, tokenizer with the speech tokens)")
    e.add_argument("--benchmarks", default="swuggy,sblimp,ssc,tsc", help="comma-separated benchmark names")
    e.add_argument("--data", required=True, help="data folder holding benchmarks/<name>.jsonl (or that folder itself)")
    e.add_argument("--max-items", type=int, default=None)
    e.add_argument("--norm", choices=["mean", "sum"], default="mean", help="NLL normalisation (published default: mean)")
    e.add_argument("--span", choices=["whole", "continuation"], default="whole", help="score the whole sequence or the last segment")
    e.add_argument("--json", help="write the accuracies as JSON")
    e.set_defaults(func=_cmd_eval)
