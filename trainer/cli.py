"""The trainer's subcommands of `scaling` (train; data and eval register from their packages).
Heavy imports stay inside the command functions."""
from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import ConfigError


def _cmd_train(args) -> int:
    from scaling import atomic
    from scaling.rundir import RunDir
    from scaling.spec import RunSpec
    from trainer.execute import execute

    target = Path(args.spec)
    if target.is_dir():
        run = RunDir(target)
        run.spec()  # validates
    else:
        spec = RunSpec.load(target)
        if not spec.data_dir:
            raise ConfigError("is required to train a run on its own", source=str(target), field="data_dir")
        out = Path(args.run_dir) if args.run_dir else target.parent / "runs" / spec.run_id
        run = RunDir(out).create(spec)
    rec = execute(run)
    print(json.dumps({k: rec[k] for k in ("run_id", "tokens", "flops", "val_loss_speech", "val_loss_text") if k in rec}, indent=2))
    if args.json:
        atomic.write_json(args.json, rec)
    return 0


def register(sub) -> None:
    from trainer.data import cli as data_cli
    from trainer.eval import cli as eval_cli

    data_cli.register(sub)
    t = sub.add_parser("train", help="train one run from a run spec (spec.yaml) or a planned run folder")
    t.add_argument("spec", help="RUN.yaml or runs/<run_id>/")
    t.add_argument("--run-dir", help="where to put the run (default: runs/<run_id> beside the spec)")
    t.add_argument("--json", help="also write the result record here")
    t.set_defaults(func=_cmd_train)

    eval_cli.register(sub)
