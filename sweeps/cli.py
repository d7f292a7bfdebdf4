"""The sweep subcommands of `scaling`: plan, status, run, worker, tune. Registered by scaling.cli."""
from __future__ import annotations

import math
import os
import signal

from scaling.errors import ConfigError


def _load_plan(path):
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    sweep = load_sweep(path)
    return sweep, resolve(sweep)


def _registry(sweep, args):
    from sweeps.registry import Registry

    _check_registry_args(args)
    return Registry(sweep.runs_dir, lease_timeout=args.lease_timeout, heartbeat=args.heartbeat,
                    max_attempts=args.max_attempts)


def _check_registry_args(args) -> None:
    """--lease-timeout, --heartbeat, --max-attempts: checked before the sweep is read or anything written."""
    from sweeps.registry import check_lease_times

    check_lease_times(args.lease_timeout, args.heartbeat, args.max_attempts)


def _check_real_arg(flag: str, value, *, low: float = 0.0, high: float | None = None) -> None:
    """A float option: finite and in (low, high] (argparse's ``type=float`` takes nan and inf)."""
    if not math.isfinite(value) or value <= low or (high is not None and value > high):
        rng = f"in ({low:g}, {high:g}]" if high is not None else f"a finite number above {low:g}"
        raise ConfigError(f"must be {rng}", field=flag, value=value)


def _check_gpus_per_run(args) -> None:
    if args.gpus_per_run < 1 or args.gpus_per_run > 1_024:
        raise ConfigError("must be a whole number from 1 to 1024", field="--gpus-per-run", value=args.gpus_per_run)


def _print_corrupt_leases(specs, reg) -> None:
    """One line per lease file that is not a lease record (taken as a dead attempt with no live holder)."""
    import sys

    for s in specs:
        for path, why in reg.corrupt_leases(s.run_id):
            print(f"warning: {path} {why}: not a lease record, so the run has no live holder there; counted as an "
                  "attempt that died (delete the file to give the attempt back)", file=sys.stderr)


def _cmd_plan(args) -> int:
    from scaling import atomic
    from sweeps.plan import format_plan, plan_rows, plan_totals

    _check_real_arg("--mfu", args.mfu, high=1.0)
    _check_real_arg("--gpu-flops", args.gpu_flops)
    if args.json and os.path.isdir(args.json):
        raise ConfigError("is a folder; give a file path for the plan", field="--json", value=args.json)
    sweep, specs = _load_plan(args.sweep)
    rows = plan_rows(specs, mfu=args.mfu, gpu_flops=args.gpu_flops)
    print(format_plan(rows, totals=plan_totals(sweep, specs, rows, mfu=args.mfu, gpu_flops=args.gpu_flops)))
    note = _warmup_note(specs)
    if note:
        print(note)
    if args.json:
        from dataclasses import asdict

        for spec, row in zip(specs, rows):  # what a cluster job of this run asks for (`--launcher slurm`)
            row["resources"] = asdict(sweep.resources_for(spec.model))
        atomic.write_json(args.json, rows)
    return 0


def _warmup_note(specs) -> str | None:
    """A wsd run warming up over a fraction of its own (long) length spends much more of its first
    cooldown branch warming up: say so, and which setting makes each branch a run of its own length."""
    from trainer.schedule import warmup_steps

    worst = None
    for s in specs:
        tc = s.train
        if tc.schedule != "wsd" or not s.cooldowns or tc.warmup_basis != "run" or tc.warmup_frac <= 0:
            continue
        branch = -(-min(s.cooldowns) // tc.tokens_per_step)
        share = warmup_steps(s.steps, tc.warmup_frac) / branch
        if share > 2 * tc.warmup_frac and (worst is None or share > worst[0]):
            worst = (share, s.run_id, tc.warmup_frac)
    if worst is None:
        return None
    return (f"note: warmup takes {100 * worst[0]:.0f}% of the first cooldown branch of {worst[1]} (warmup_frac "
            f"{worst[2]:g} of the whole run); train.warmup_basis: shortest makes it {worst[2]:g} of each run's "
            "shortest budget, so that every branch is a run of its own length")


def _cmd_status(args) -> int:
    from sweeps.plan import format_plan, plan_rows

    _check_registry_args(args)
    sweep, specs = _load_plan(args.sweep)
    reg = _registry(sweep, args)
    states = {s.run_id: reg.effective_state(s) for s in specs}
    _print_corrupt_leases(specs, reg)
    print(format_plan(plan_rows(specs), states))
    counts = {st: list(states.values()).count(st) for st in ("pending", "running", "done", "failed")}
    print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    _print_failed(specs, states, reg)
    return 1 if counts["failed"] else 0


def _print_failed(specs, states, reg) -> None:
    from scaling.initref import InitRef

    for s in specs:
        if states[s.run_id] == "failed":
            dep = InitRef.parse(s.init).run_id
            why = f"initialisation run {dep} failed" if dep and reg.state(dep) == "failed" else reg.failure(s.run_id)
            print(f"FAILED {s.run_id}: {why}")


def _require_data(sweep) -> None:
    """Every arm trains on a prepared data folder (plan works without one)."""
    from scaling.datadir import MANIFEST

    for arm in sweep.arms:
        data = sweep.data_of(arm)
        if sweep.tokenizer_of(arm) != "data" or data is None or not (data / MANIFEST).is_file():
            field = f"arms.{arm}.data" if arm in sweep.arm_data else "data"
            raise ConfigError(f"is required to run (arm '{arm}' has no prepared data folder; plan works without one)",
                              source=str(sweep.path), field=field, value=str(data) if data else None)


def _cmd_run(args) -> int:
    from sweeps.local import check_output, run_sweep, run_workers

    _check_registry_args(args)
    if args.workers == "auto":
        from sweeps.local import auto_workers

        args.workers = auto_workers()
    elif not (args.workers.isascii() and args.workers.isdigit()) or not 1 <= int(args.workers) <= 1_024:
        raise ConfigError("must be 'auto' or a whole number from 1 to 1024", field="--workers", value=args.workers)
    args.workers = int(args.workers)
    _check_gpus_per_run(args)
    _check_accelerate_args(args)
    _cache_arg_env(args)
    sweep, specs = _load_plan(args.sweep)
    if not args.dry_run:  # before anything is written, the registry's folders included
        _require_data(sweep)
        _check_benchmarks(sweep, specs)
    reg = _registry(sweep, args)
    if args.dry_run:
        if args.launcher != "slurm":
            raise ConfigError("only applies to --launcher slurm (`scaling plan` shows any sweep's runs)",
                              field="--dry-run", value=True)
        from sweeps.slurm import dry_run

        dry_run(sweep, specs, reg)  # what would be submitted: works before the data is prepared
        return 0
    check_output(sweep)
    _check_wandb(args)
    _print_corrupt_leases(specs, reg)
    if args.launcher == "slurm":
        from sweeps.slurm import run_slurm

        counts = run_slurm(sweep, specs, reg, executor=args.executor, wait=not args.no_wait, wandb=args.wandb)
    elif args.launcher == "accelerate":
        from sweeps.accel import run_accelerate

        counts = run_accelerate(sweep, specs, reg, extra=args.accelerate_args, wandb=args.wandb)
    elif args.workers > 1:
        counts = run_workers(sweep, specs, args.workers, reg, wandb=args.wandb, gpus_per_run=args.gpus_per_run)
    else:
        counts = run_sweep(sweep, specs, registry=reg, wandb=args.wandb, execute=_executor(args))
    print(f"trained {counts['trained']}, skipped {counts['skipped']} finished, failed {counts['failed']}"
          + (f", unfinished {counts['unfinished']}" if counts.get("unfinished") else "")
          + f"; results in {sweep.results_csv}")
    if counts.get("stopped_by"):
        return 128 + int(signal.Signals[counts["stopped_by"]])  # as a process killed by that signal
    return 1 if counts["failed"] or counts.get("unfinished") else 0


def _check_benchmarks(sweep, specs) -> None:
    """Every benchmark item a run still to train will evaluate, read and encoded once before any run starts
    (trainer.eval.suite.check_benchmarks): a bad line is an error naming the file and line now, not after a
    run has trained (each run checks again when it opens its data)."""
    from scaling.rundir import RunDir

    groups = {}
    for s in specs:
        done = sweep.runs_dir.is_dir() and RunDir(sweep.runs_dir / s.run_id).status == "done"
        if s.benchmarks and s.data_dir and not done:
            groups.setdefault((s.data_dir, tuple(s.benchmarks), s.bench_items), s)
    if not groups:
        return
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import load_tokenizer
    from trainer.eval.suite import check_benchmarks

    tokenizers = {}
    for data_dir, names, items in groups:
        if data_dir not in tokenizers:
            tokenizers[data_dir] = load_tokenizer(DataDir.open(data_dir).tokenizer_dir(speech=True))
        check_benchmarks(data_dir, names, tokenizers[data_dir], max_items=items)


def _check_accelerate_args(args) -> None:
    """--accelerate-args is split like a shell line (shlex) and passed as arguments, never run by a shell."""
    import shlex

    from scaling.spec import check_text

    if args.accelerate_args:
        check_text(args.accelerate_args, field="--accelerate-args")
        try:
            shlex.split(args.accelerate_args)
        except ValueError as e:
            raise ConfigError(f"cannot be split into arguments ({e})", field="--accelerate-args",
                              value=args.accelerate_args) from None


def _check_wandb(args) -> None:
    if args.wandb and args.wandb != "disabled":
        from sweeps.tracking import require_wandb

        require_wandb(args.wandb)


def _executor(args):
    """In-process training, or torchrun on this worker's GPUs when a run takes more than one."""
    if args.gpus_per_run <= 1:
        return None
    from sweeps.slurm import torchrun_command
    from sweeps.schema import Resources
    from sweeps.accel import command_executor

    return command_executor(lambda run: torchrun_command(run.path, Resources(gpus_per_node=args.gpus_per_run),
                                                         master="localhost", job_id="0"))


def _cmd_worker(args) -> int:
    from sweeps.local import work

    _check_registry_args(args)
    _check_gpus_per_run(args)
    _cache_arg_env(args)
    sweep, specs = _load_plan(args.sweep)
    _require_data(sweep)
    _check_wandb(args)
    from scaling.errors import Stopped
    from sweeps.local import stop_on_signals

    try:
        with stop_on_signals():
            counts = work(sweep, specs, _registry(sweep, args), wandb=args.wandb, execute=_executor(args))
    except Stopped as stop:
        return 128 + stop.signum  # as a process killed by that signal; the run's lease was released
    return 1 if counts["failed"] else 0


def _cache_arg(p) -> None:
    p.add_argument("--no-cache", action="store_true",
                   help="train the text LMs even when the user cache (~/.cache/speech-scaling, or "
                        "$SPEECH_SCALING_CACHE) holds them, and store nothing there")


def _cache_arg_env(args) -> None:
    """--no-cache for this process and the workers it starts (they inherit the environment)."""
    if getattr(args, "no_cache", False):
        from trainer.runcache import ENV

        os.environ[ENV] = "off"


def _wandb_arg(p) -> None:
    p.add_argument("--wandb", nargs="?", const="offline", choices=("offline", "online", "disabled"), default=None,
                   help="log every run live to Weights & Biases from rank 0 (offline unless 'online'; "
                        "metrics.jsonl stays the record)")


def _registry_args(p) -> None:
    p.add_argument("--lease-timeout", type=float, default=120.0,
                   help="seconds without a heartbeat after which a run's worker is taken for dead (default 120)")
    p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats (default 10)")
    p.add_argument("--max-attempts", type=int, default=2, help="attempts per run before it stays failed (default 2)")


def register(sub) -> None:
    pl = sub.add_parser("plan", help="show the resolved grid of a sweep file (nothing runs)")
    pl.add_argument("sweep", help="the sweep file (YAML)")
    pl.add_argument("--json", help="also write the plan as a JSON list of runs")
    pl.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation for the GPU-hour estimate (default 0.4)")
    pl.add_argument("--gpu-flops", type=float, default=989e12, help="peak FLOP/s of one GPU (default 989e12, H100 bf16 dense)")
    pl.set_defaults(func=_cmd_plan)

    st = sub.add_parser("status", help="states of a sweep's runs")
    st.add_argument("sweep", help="the sweep file (YAML)")
    _registry_args(st)
    st.set_defaults(func=_cmd_status)

    r = sub.add_parser("run", help="run a sweep's pending runs (finished runs are skipped) and write results.csv")
    r.add_argument("sweep", help="the sweep file (YAML)")
    r.add_argument("--workers", default="1",
                   help="local launcher: worker processes sharing this machine (cores/K threads or one GPU set each); "
                        "'auto': one single-threaded worker per usable CPU core, at most 8")
    r.add_argument("--gpus-per-run", type=int, default=1,
                   help="local launcher on a GPU host: devices per run (each worker holds its own; >1 runs torchrun)")
    r.add_argument("--launcher", choices=("local", "accelerate", "slurm"), default="local",
                   help="local worker processes (default), `accelerate launch`, or SLURM jobs through submitit")
    r.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                   help="slurm launcher: submitit executor ('local' runs the jobs on this machine)")
    r.add_argument("--dry-run", action="store_true",
                   help="slurm launcher: print each run's sbatch script and torchrun command; submit nothing")
    r.add_argument("--no-wait", action="store_true", help="slurm launcher: return once the jobs are submitted")
    r.add_argument("--accelerate-args", default="", help="accelerate launcher: extra arguments for `accelerate launch`")
    _wandb_arg(r)
    _cache_arg(r)
    _registry_args(r)
    r.set_defaults(func=_cmd_run)

    w = sub.add_parser("worker", help="one worker loop on a sweep: claim, train, repeat until no run is left")
    w.add_argument("sweep", help="the sweep file (YAML)")
    w.add_argument("--gpus-per-run", type=int, default=1, help="devices per run on a GPU host (>1 runs torchrun)")
    _wandb_arg(w)
    _cache_arg(w)
    _registry_args(w)
    w.set_defaults(func=_cmd_worker)

    try:
        from sweeps.tune import register as register_tune
    except ImportError:  # pragma: no cover - tune.py always ships; optuna is imported inside it
        return
    register_tune(sub)
