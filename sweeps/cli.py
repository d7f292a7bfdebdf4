"""The sweep subcommands of `scaling`: plan, status, run. Registered by scaling.cli."""
from __future__ import annotations


def _load_plan(path):
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    sweep = load_sweep(path)
    return sweep, resolve(sweep)


def _cmd_plan(args) -> int:
    from scaling import atomic
    from sweeps.plan import format_plan, plan_rows

    sweep, specs = _load_plan(args.sweep)
    rows = plan_rows(specs)
    print(format_plan(rows))
    if args.json:
        atomic.write_json(args.json, rows)
    return 0


def _cmd_status(args) -> int:
    from scaling.rundir import RunDir
    from sweeps.plan import format_plan, plan_rows

    sweep, specs = _load_plan(args.sweep)
    states = {s.run_id: RunDir(sweep.runs_dir / s.run_id).status for s in specs}
    print(format_plan(plan_rows(specs), states))
    counts = {st: list(states.values()).count(st) for st in ("pending", "running", "done", "failed")}
    print("  ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _cmd_run(args) -> int:
    from sweeps.local import run_sweep

    sweep, specs = _load_plan(args.sweep)
    counts = run_sweep(sweep, specs)
    print(f"trained {counts['trained']}, skipped {counts['skipped']} finished, failed {counts['failed']}; "
          f"results in {sweep.results_csv}")
    return 1 if counts["failed"] else 0


def register(sub) -> None:
    pl = sub.add_parser("plan", help="show the resolved grid of a sweep file (nothing runs)")
    pl.add_argument("sweep")
    pl.add_argument("--json", help="also write the plan as a JSON list of runs")
    pl.set_defaults(func=_cmd_plan)

    st = sub.add_parser("status", help="states of a sweep's runs")
    st.add_argument("sweep")
    st.set_defaults(func=_cmd_status)

    r = sub.add_parser("run", help="run a sweep's pending runs (finished runs are skipped) and write results.csv")
    r.add_argument("sweep")
    r.set_defaults(func=_cmd_run)
