"""The `scaling` console command. Each package registers its own subcommands (trainer.cli,
sweeps.cli, analysis.cli); heavy imports (torch, transformers, pandas) happen inside the
commands that need them, so `plan`, `fit` and `--help` start fast."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaling.errors import ConfigError


def _cmd_demo(args) -> int:
    from scaling.demo import run_demo

    return run_demo(Path(args.out), quick=args.quick, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from analysis import cli as analysis_cli
    from sweeps import cli as sweeps_cli
    from trainer import cli as trainer_cli

    p = argparse.ArgumentParser(prog="scaling", description="Scaling-law experiments for interleaved speech-text LMs.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the whole study end to end on the built-in synthetic corpus (CPU, no downloads)")
    d.add_argument("--out", required=True, help="output folder (data/, runs/, results.csv, fits.json, figures/, report.md)")
    d.add_argument("--quick", action="store_true", help="3 sizes x 3 budgets per arm, a few minutes on 2 cores")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)

    trainer_cli.register(sub)
    sweeps_cli.register(sub)

    f = sub.add_parser("fit", help="fit scaling laws to a results table")
    analysis_cli.add_fit_arguments(f)
    f.set_defaults(func=analysis_cli.run_fit)
    g = sub.add_parser("figures", help="draw the figures (and report.md) from a results table")
    analysis_cli.add_figures_arguments(g)
    g.set_defaults(func=analysis_cli.run_figures)
    r = sub.add_parser("report", help="fits, figures, tables and report.md for a sweep in one go")
    analysis_cli.add_report_arguments(r)
    r.set_defaults(func=analysis_cli.run_report)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
