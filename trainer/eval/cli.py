"""`scaling eval`: benchmarks on a checkpoint (the model is loaded once for all metrics)."""
from __future__ import annotations

from pathlib import Path


def bench_root(data: str | Path) -> Path:
    """The folder holding the benchmarks: ``<data>/benchmarks`` when it exists, else ``<data>``."""
    data = Path(data)
    return data / "benchmarks" if (data / "benchmarks").is_dir() else data


def run_eval(checkpoint: str | Path, data: str | Path, names: list[str], *, max_items: int | None = None,
             norm: str = "mean", span: str = "whole", batch_size: int = 32, n_resamples: int = 1000, seed: int = 0):
    """Load the checkpoint once, score every benchmark; returns {name: MetricResult}."""
    import torch

    from scaling.errors import ConfigError
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite
    from trainer import model as model_mod

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise ConfigError("checkpoint folder not found", source=str(ckpt))
    if not names:
        raise ConfigError("no benchmarks named", field="benchmarks")
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    # encode (and so validate) every benchmark before the model is loaded
    suite = EvalSuite.from_data(bench_root(data), names, tok, vocab, max_items=max_items, norm=norm, span=span,
                                batch_size=batch_size)
    model = model_mod.load_model(ckpt)
    emb = model.get_input_embeddings().weight.shape[0]
    if emb < vocab.size:
        raise ConfigError(f"the model has {emb} embedding rows but the tokenizer {vocab.size} tokens",
                          source=str(ckpt), field="vocab_size", value=emb)
    if torch.cuda.is_available():
        model.to("cuda")  # scored under bf16 autocast
    return suite.run_detailed(model, n_resamples=n_resamples, seed=seed)


def _cmd_eval(args) -> int:
    from scaling import atomic
    from trainer.eval.results import format_table, results_json

    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    res = run_eval(args.checkpoint, args.data, names, max_items=args.max_items, norm=args.norm, span=args.span,
                   batch_size=args.batch_size, n_resamples=args.resamples, seed=args.seed)
    print(format_table(res))
    if args.per_item:
        for name, r in res.items():
            r.write_csv(Path(args.per_item) / f"{name}.csv")
    if args.json:
        atomic.write_json(args.json, results_json(res, checkpoint=str(args.checkpoint), norm=args.norm,
                                                  span=args.span, resamples=args.resamples, seed=args.seed))
    return 0


def _positive(s: str) -> int:
    import argparse

    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {v})")
    return v


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint on likelihood benchmarks")
    e.add_argument("checkpoint", help="a model folder (config.json, safetensors, tokenizer with the speech tokens)")
    e.add_argument("--benchmarks", default="swuggy,sblimp,ssc,tsc",
                   help="comma-separated names: synthetic files, ZeroSpeech folders (<name>/gold.csv) or StoryCloze "
                        "folders (<name>[_s2t|_t2s|_t2t])")
    e.add_argument("--data", required=True, help="data folder holding benchmarks/ (or that folder itself)")
    e.add_argument("--max-items", type=_positive, default=None, help="first N pairs per benchmark")
    e.add_argument("--norm", choices=["mean", "sum"], default="mean", help="NLL normalisation (published default: mean)")
    e.add_argument("--span", choices=["whole", "continuation"], default="whole",
                   help="score the whole sequence (published default) or the last segment only")
    e.add_argument("--batch-size", type=_positive, default=32)
    e.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95%% interval")
    e.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    e.add_argument("--per-item", metavar="DIR", help="write DIR/<metric>.csv: id, nll_pos, nll_neg, n_tokens_pos, "
                                                      "n_tokens_neg, score")
    e.add_argument("--json", help="write the summary (accuracy, 95%% CI, items per metric) as JSON")
    e.set_defaults(func=_cmd_eval)
