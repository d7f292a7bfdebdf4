"""The `scaling` console command.

Every package registers its own subcommands with one function, ``register(subparsers)``: the
demo (scaling.demo), data / train / eval / bench / memory (trainer.cli), plan / status / run /
worker / tune (sweeps.cli), fit / figures / report (analysis.cli). Registering only defines
arguments; heavy imports (torch, transformers, pandas, scipy) happen inside the command that
needs them, so `--help`, plan, status, fit, figures and report start without torch.
"""
from __future__ import annotations

import argparse
import sys

from scaling.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from analysis import cli as analysis_cli
    from scaling import demo
    from sweeps import cli as sweeps_cli
    from trainer import cli as trainer_cli

    p = argparse.ArgumentParser(prog="scaling", description="Scaling-law experiments for interleaved speech-text LMs.")
    sub = p.add_subparsers(dest="command", required=True)
    for package in (demo, trainer_cli, sweeps_cli, analysis_cli):
        package.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cli = main  # commands that chain other commands (the demo) run them through this
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
