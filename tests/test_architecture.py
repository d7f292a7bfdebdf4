"""The shape of the code base: import direction, no cycles, one owner per contract, a CLI that starts
without torch. Each test reads the source (AST) or runs the CLI in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.datadir import BENCHMARK_NAMES, MANIFEST, STREAMS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("scaling", "sweeps", "trainer", "analysis")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            name = ".".join(f.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules that ``name`` imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_import_direction():
    """Arrows point towards scaling: scaling imports no other package (its CLI front registers them);
    analysis never imports trainer or sweeps; trainer never imports sweeps or analysis."""
    forbidden = {"scaling": {"sweeps", "trainer", "analysis"}, "analysis": {"trainer", "sweeps"},
                 "trainer": {"sweeps", "analysis"}, "sweeps": {"analysis"}}
    bad = [(m, t) for m, ts in GRAPH.items() for t in ts
           if t.split(".")[0] in forbidden[m.split(".")[0]] and m != "scaling.cli"]
    assert bad == []


def _literals(path: Path):
    """(node, docstring?) for every string constant and every collection literal of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        yield node, id(node) in docs


def _sources():
    for f in sorted(REPO.glob("*/**/*.py")):
        top = f.relative_to(REPO).parts[0]
        if top in (*PACKAGES, "benchmarks") and f != REPO / "scaling" / "datadir.py":
            yield f


def test_only_datadir_reads_data_json():
    hits = []
    for f in _sources():
        for node, is_doc in _literals(f):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and not is_doc
                    and (node.value == MANIFEST or node.value.endswith("/" + MANIFEST))):
                hits.append(f"{f.relative_to(REPO)}:{node.lineno}")
    assert hits == [], "data.json is named outside scaling/datadir.py (open the folder with DataDir)"


def test_no_stream_or_benchmark_name_lists_outside_the_registry():
    """A tuple, list, set or dict literal naming two or more benchmarks, or three or more streams, belongs
    in scaling/datadir.py (BENCHMARKS, STREAMS, MIX_STREAMS)."""
    bench, streams = set(BENCHMARK_NAMES), set(STREAMS)
    hits = []
    for f in _sources():
        for node, _ in _literals(f):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                elts = node.elts
            elif isinstance(node, ast.Dict):
                elts = [k for k in node.keys if k is not None]
            else:
                continue
            names = {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(names & bench) >= 2 or len(names & streams) >= 3:
                hits.append(f"{f.relative_to(REPO)}:{node.lineno} {sorted(names & (bench | streams))}")
    assert hits == []


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["plan", "sweeps/configs/sims_qwen2.5.yaml"],
    ["fit", "tests/data/chinchilla_epoch.csv", "--law", "parametric"],
])
def test_cli_commands_that_do_not_train_never_import_torch(argv):
    code = ("import sys\nfrom scaling.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules)\n"
            "print('RC', rc, 'HEAVY', heavy)\n")
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "RC 0 HEAVY []", proc.stdout[-2000:]


def test_command_table_names_the_module_that_registers_each_command():
    # `scaling CMD` builds only COMMANDS[CMD]'s parser: a command missing from the table, or listed
    # under the wrong module, would fail to parse (or parse another module's arguments).
    import argparse
    import importlib

    from scaling.cli import COMMANDS, PACKAGES

    registered = {}
    for name in PACKAGES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert registered == COMMANDS


#: argv after `scaling fit`: every law, the extrapolation check (--json), --drop-top, and a table of
#: two arms on an isoFLOP grid (the comparison of arms; the power-sum isoFLOP fit, which does use
#: scipy.optimize: Epoch's points are not on a grid and never reach it).
FIT_VARIANTS = {
    "all": ["tests/data/chinchilla_epoch.csv"],
    "parametric --drop-top 5": ["tests/data/chinchilla_epoch.csv", "--law", "parametric", "--drop-top", "5"],
    "--json": ["tests/data/chinchilla_epoch.csv", "--json", "{tmp}/fits.json"],
    "two arms --json --bootstrap": ["{tmp}/results.csv", "--json", "{tmp}/fits2.json", "--bootstrap", "8"],
    "two arms isoflop": ["{tmp}/results.csv", "--law", "isoflop", "--arm", "textless"],
    "two arms envelope": ["{tmp}/results.csv", "--law", "envelope", "--metric", "ssc", "--json", "{tmp}/env.json"],
}


@pytest.mark.parametrize("variant", FIT_VARIANTS)
def test_scaling_fit_starts_without_other_packages_clis_or_plotting(variant, tmp_path):
    # `scaling fit` must stay well under a second: nothing it does not use is imported, not even by
    # the parser (sweeps' schema, yaml, the trainer's CLI modules), by the table (pandas and the
    # pyarrow it imports: half a second; analysis.table instead) or by the fits (matplotlib,
    # scipy's optimisers: the default parametric fit needs numpy only).
    from tests.helpers.tables import write_two_arm_csv

    write_two_arm_csv(tmp_path / "results.csv")
    argv = ["fit"] + [a.format(tmp=tmp_path) for a in FIT_VARIANTS[variant]]
    modules = ("scaling.demo",) if "two arms" in variant else ("scipy.optimize", "scaling.demo")
    code = ("import sys, contextlib, io\nfrom scaling.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main({argv!r})\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'matplotlib', 'yaml',"
            f" 'sweeps', 'trainer', 'pandas', 'pyarrow') or m in {modules!r})\n"
            "print('RC', rc, 'HEAVY', heavy)\n")
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "RC 0 HEAVY []", proc.stdout[-2000:]
