"""Whole-command wall time of `scaling fit` on Epoch's Chinchilla points (target: under 1 s).

Usage:
  PYTHONPATH=. python benchmarks/bench_fit_cli.py [--repeat R] [--csv PATH]

Runs, each ``--repeat`` times (interleaved, default 7), in fresh interpreters exactly as a user would:

  python -m scaling fit CSV                                   (--law all: every law, one parametric fit)
  python -m scaling fit CSV --law parametric --drop-top 5     (Epoch's 240 points)
  python -m scaling fit CSV --json TMP/fits.json              (also the extrapolation check: a second fit)

and prints each command's wall time (median, min) and CPU time (user + sys), then one
``python -X importtime`` run of each, split into interpreter start-up (site), numpy, pandas (and
the pyarrow it imports), this repository's modules, everything else imported; the rest of the
wall time is the work. The load average is printed before and after: on a shared machine wall
times are only comparable at a similar load (CPU time is steadier).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO / "tests" / "data" / "chinchilla_epoch.csv"
PROJECT = ("scaling", "analysis", "sweeps", "trainer")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``python -m scaling ARGV``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaling", *argv], cwd=REPO, env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _importtime(argv: list[str]) -> tuple[float, dict]:
    """Wall time of one ``-X importtime`` run and its imports' seconds by group."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "scaling", *argv], cwd=REPO, env=_env(),
                          check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    # importtime prints each module after its children, indented by depth: rebuild the tree.
    stack: list[tuple[int, str, float, float, list]] = []  # (depth, name, self s, cumulative s, children)
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if not m:
            continue
        depth = len(m[3]) // 2
        children = []
        while stack and stack[-1][0] > depth:
            children.insert(0, stack.pop())
        stack.append((depth, m[4], int(m[1]) / 1e6, int(m[2]) / 1e6, children))
    groups = dict.fromkeys(("site (start-up)", "numpy", "pandas", "  of which pyarrow", "this repository", "other"), 0.0)

    def visit(node):
        _, name, self_s, cum_s, children = node
        top = name.split(".")[0]
        if top in PROJECT:  # its own time; what it imports goes to the groups below
            groups["this repository"] += self_s
            for c in children:
                visit(c)
            return
        group = {"site": "site (start-up)", "numpy": "numpy", "pandas": "pandas", "pyarrow": "pandas"}.get(top, "other")
        groups[group] += cum_s
        if group == "pandas":
            groups["  of which pyarrow"] += sum(n[3] for n in _find(node, "pyarrow"))

    for node in stack:
        visit(node)
    return wall, groups


def _find(node, top: str) -> list:
    """The outermost modules of package ``top`` in the subtree of ``node``."""
    if node[1].split(".")[0] == top:
        return [node]
    return [n for c in node[4] for n in _find(c, top)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_fit_cli.")
    commands = {"fit (--law all)": ["fit", args.csv],
                "fit --law parametric --drop-top 5": ["fit", args.csv, "--law", "parametric", "--drop-top", "5"],
                "fit --json (+ extrapolation check)": ["fit", args.csv, "--json", os.path.join(tmp, "fits.json")]}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}   "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
    for argv_ in commands.values():  # warm the file cache
        _run(argv_)
    times = {k: [] for k in commands}
    for _ in range(args.repeat):
        for name, argv_ in commands.items():
            times[name].append(_run(argv_))
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:36s} wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}; "
              f"{' '.join(f'{w:.2f}' for w in walls)})   cpu median {statistics.median(cpus):.2f} s")
    for name, argv_ in list(commands.items())[:2]:
        wall, groups = _importtime(argv_)
        parts = ", ".join(f"{k.strip()} {v:.3f}" for k, v in groups.items())
        imported = sum(v for k, v in groups.items() if not k.startswith("  "))
        print(f"{name:36s} -X importtime: wall {wall:.2f} s = imports {imported:.2f} ({parts}) + work {wall - imported:.2f}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(tmp, ignore_errors=True)
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    med = {name: round(statistics.median(w for w, _ in runs), 3) for name, runs in times.items()}
    print("record:", write_record("fit_cli", {"wall_median_s": med, "repeat": args.repeat},
                                  title="`scaling fit` on Epoch's points, whole command",
                                  summary=", ".join(f"{k} {v:.2f} s" for k, v in med.items()) + f" (medians of {args.repeat})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
