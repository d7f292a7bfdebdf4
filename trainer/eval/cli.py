"""`scaling eval`: benchmarks on a checkpoint (the model is loaded once for all metrics)."""
from __future__ import annotations

import sys
from pathlib import Path


def run_eval(checkpoint: str | Path, data: str | Path, names: list[str], *, max_items: int | None = None,
             norm: str = "mean", span: str = "whole", batch_size: int = 32, n_resamples: int = 1000, seed: int = 0,
             convention: str = "ours", dtype: str = "fp32", slamkit_tokeniser: str | None = None):
    """Load the checkpoint once, score every pair benchmark; returns {name: MetricResult} (each with the
    scoring settings in ``.settings``). ``dtype``: ``fp32`` (a float32 model, no autocast) or ``bf16``
    (SlamKit's: the model and its logits in bfloat16). ``slamkit_tokeniser`` (``--convention slamkit``):
    ``unit`` or ``interleaved``, default the checkpoint's (``trainer.eval.scoring.slamkit_rules``)."""
    import torch

    from scaling.errors import ConfigError
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.scoring import DTYPES, slamkit_rules
    from trainer.eval.suite import EvalSuite
    from trainer import model as model_mod

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise ConfigError("checkpoint folder not found", source=str(ckpt))
    if not names:
        raise ConfigError("no benchmarks named", field="benchmarks")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype; known: {list(DTYPES)}", field="--dtype", value=dtype)
    if slamkit_tokeniser is not None and convention != "slamkit":
        raise ConfigError("--slamkit-tokeniser applies to --convention slamkit", field="--slamkit-tokeniser",
                          value=slamkit_tokeniser)
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    rules = slamkit_rules(tok, tokeniser=slamkit_tokeniser, checkpoint=ckpt) if convention == "slamkit" else None
    # a cross-modal set named without a suffix: read as the convention's default (storycloze_modalities)
    from trainer.eval.benchmarks import storycloze_modalities

    load = {n: (storycloze_modalities(data, n, convention) or {}).get("set", n) for n in names}
    # encode (and so validate) every benchmark before the model is loaded
    suite = EvalSuite.from_data(data, list(dict.fromkeys(load.values())), tok, vocab, max_items=max_items, norm=norm,
                                span=span, batch_size=batch_size, convention=convention, slamkit=rules, dtype=dtype)
    model = model_mod.load_model(ckpt)
    emb = model.get_input_embeddings().weight.shape[0]
    if emb < vocab.size:
        raise ConfigError(f"the model has {emb} embedding rows but the tokenizer {vocab.size} tokens",
                          source=str(ckpt), field="vocab_size", value=emb)
    # fp32: the float32 model without autocast; bf16: the model itself in bfloat16, as SlamKit scores
    model.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    if torch.cuda.is_available():
        model.to("cuda")
    res = suite.run_detailed(model, n_resamples=n_resamples, seed=seed)
    return {n: res[load[n]] for n in names}


def write_submissions(results, out_dir: str | Path, *, split: str = "dev") -> list[Path]:
    """The official ZeroSpeech submission files of the ZeroSpeech results among ``results``."""
    from trainer.eval.zerospeech import submission_lines, write_submission

    written = []
    for name, r in results.items():
        if r.task is None:
            continue
        # a log-probability: higher = more likely (the scored value is an NLL)
        scores = submission_lines(r.files, -r.nll_pos, -r.nll_neg, source=name)
        written.append(write_submission(out_dir, r.task, scores, split=split))
    return written


def check_outputs(args) -> None:
    """Every output option of `scaling eval` checked before the checkpoint is read (scaling.atomic)."""
    from scaling import atomic

    for flag, attr, kind in (("--json", "json", "file"), ("--per-item", "per_item", "dir"),
                             ("--submission", "submission", "dir"), ("--genppl-out", "genppl_out", "dir")):
        path = getattr(args, attr, None)
        if path:
            (atomic.check_out_file if kind == "file" else atomic.check_out_dir)(path, flag)


def _cmd_eval(args) -> int:
    from scaling import atomic
    from scaling.errors import ConfigError

    check_outputs(args)
    from trainer.eval.results import format_table, results_json

    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if args.submission and args.max_items:
        raise ConfigError("a submission must score every file of the set; drop --max-items", field="--submission")
    gen = [n for n in names if n == "genppl"]
    pairs = [n for n in names if n != "genppl"]
    res = run_eval(args.checkpoint, args.data, pairs, max_items=args.max_items, norm=args.norm, span=args.span,
                   batch_size=args.batch_size, n_resamples=args.resamples, seed=args.seed,
                   convention=args.convention, dtype=args.dtype,
                   slamkit_tokeniser=args.slamkit_tokeniser) if pairs else {}
    if args.submission:
        if not any(r.task for r in res.values()):
            raise ConfigError("no ZeroSpeech benchmark (a folder with gold.csv) among --benchmarks", field="--submission")
        for f in write_submissions(res, args.submission, split=args.submission_set):
            print(f"wrote {f}")
    meta = dict(checkpoint=str(args.checkpoint), norm=args.norm, span=args.span, resamples=args.resamples,
                seed=args.seed, convention=args.convention, dtype=args.dtype)
    if res:  # the suite's settings (SlamKit's rules under --convention slamkit: label_drop_id, tokeniser, ...)
        meta.update(next(iter(res.values())).settings)
    from trainer.eval.benchmarks import storycloze_modalities

    modalities = {n: m for n in res if (m := storycloze_modalities(args.data, n, args.convention))}
    if modalities:  # StoryCloze folders: the prompt -> ending modalities used, and whether by default
        meta["modalities"] = modalities
        for n, m in modalities.items():
            if m["cross_modal"]:
                print(f"{n}: {m['prompt']} -> {m['ending']}, {m['chosen_by']}", file=sys.stderr)
    summary = results_json(res, **meta)
    if res:
        print(format_table(res))
    if gen:
        from trainer.generate.genppl import genppl_from_args

        g = genppl_from_args(args)
        print(g.format())
        summary["metrics"]["genppl"] = g.summary()
    if args.per_item:
        for name, r in res.items():
            r.write_csv(Path(args.per_item) / f"{name}.csv")
    if args.json:
        atomic.write_json(args.json, summary)
    return 0


def _positive(s: str) -> int:
    import argparse

    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {v})")
    return v


def register(sub) -> None:
    from scaling.datadir import BENCHMARK_NAMES, DEFAULT_BENCHMARKS
    from trainer.generate import cli as gen_cli

    e = sub.add_parser("eval", help="evaluate a checkpoint on likelihood benchmarks (and GenPPL)")
    e.add_argument("checkpoint", help="a model folder (config.json, safetensors, tokenizer with the speech tokens)")
    e.add_argument("--benchmarks", default=",".join(DEFAULT_BENCHMARKS),
                   help=f"comma-separated names: the registry's {list(BENCHMARK_NAMES)}, ZeroSpeech folders "
                        "(<name>/gold.csv) or StoryCloze folders (<name>[_s2t|_t2s|_t2t], any layout in docs/reference/eval-inputs.md); "
                        "genppl generates and needs --prompts, --vocoder, --asr, --text-lm")
    e.add_argument("--data", default=".", help="data folder (data.json + benchmarks/) or a folder of benchmarks")
    e.add_argument("--convention", choices=["ours", "slamkit"], default="ours",
                   help="how items become tokens (docs/explanation/scoring.md); slamkit reproduces SlamKit's encoding "
                        "and scoring (its pad-id label drop, tokeniser kind)")
    e.add_argument("--slamkit-tokeniser", choices=["unit", "interleaved"], default=None,
                   help="with --convention slamkit: the model's SlamKit tokeniser (unit: pure-speech UnitTokeniser, "
                        "BOS + units + EOS; interleaved: InterleavingTokeniser); default the checkpoint's, else interleaved")
    e.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="scoring precision: fp32 (float32 model, no autocast) or bf16 (model and logits in bfloat16, "
                        "as SlamKit scores; for equality with SlamKit's numbers on GPU)")
    e.add_argument("--submission", metavar="DIR", help="write the official ZeroSpeech sLM21 submission files "
                                                      "(DIR/lexical/<set>.txt, DIR/syntactic/<set>.txt)")
    e.add_argument("--submission-set", choices=["dev", "test"], default="dev", help="which set the --submission files are for (default dev)")
    e.add_argument("--max-items", type=_positive, default=None, help="first N pairs per benchmark")
    e.add_argument("--norm", choices=["mean", "sum"], default="mean", help="NLL normalisation (published default: mean)")
    e.add_argument("--span", choices=["whole", "continuation"], default="whole",
                   help="score the whole sequence (published default) or the last segment only")
    e.add_argument("--batch-size", type=_positive, default=32, help="rows per forward batch when scoring one sequence per row (default 32; packed scoring is bounded by tokens)")
    e.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95%% interval")
    e.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    e.add_argument("--per-item", metavar="DIR", help="write DIR/<metric>.csv: id, nll_pos, nll_neg, n_tokens_pos, "
                                                      "n_tokens_neg, score")
    e.add_argument("--json", help="write the summary (accuracy, 95%% CI, items per metric) as JSON")
    gen_cli.add_generation_args(e, required=False)
    gen_cli.add_genppl_args(e)
    e.set_defaults(func=_cmd_eval)
