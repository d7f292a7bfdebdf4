"""The work of `scaling design` (arguments in :mod:`analysis.design_cli`): plan the template, search,
rank, confirm, write. Sweep files are read and checked by `scaling plan` (run in-process through
:func:`scaling.cli.main`: analysis never imports the sweeps package)."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from scaling import atomic, yamlio
from scaling.errors import ConfigError
from scaling.flops import wsd_branch_tokens
from scaling.spec import TrainConfig

from .design import predict, wide_limit
from .design_grid import Grid, Setting, build, candidates
from .power import format_noise, laws_from_fits, parse_law, plan_points, resolve_noise, simulate


def plan_of(doc: dict, base: Path, work: Path, name: str, *, source: str) -> list[dict]:
    """The plan rows of a sweep document (paths relative to ``base``), through `scaling plan --json`."""
    from scaling.cli import main

    path, out = work / f"{name}.yaml", work / f"{name}.plan.json"
    atomic.write_yaml(path, _portable(doc, base))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["plan", str(path), "--json", str(out)])
    if rc != 0:
        raise ConfigError(f"`scaling plan` refused the {name} grid: {err.getvalue().strip().removeprefix('error: ')}",
                          source=source)
    return json.loads(out.read_text(encoding="utf-8"))


def _portable(doc: dict, base: Path) -> dict:
    """The document with its data folders absolute, so that it plans from any folder."""
    doc = copy.deepcopy(doc)

    def absolute(v):
        return v if not isinstance(v, str) or Path(v).is_absolute() else str((base / v).resolve())

    if "data" in doc:
        doc["data"] = absolute(doc["data"])
    if isinstance(doc.get("arms"), dict):
        for body in doc["arms"].values():
            if isinstance(body, dict) and "data" in body:
                body["data"] = absolute(body["data"])
    hp = doc.get("hyperparameters")
    if isinstance(hp, dict) and "from_study" in hp:
        hp["from_study"] = absolute(hp["from_study"])
    return doc


def _grid_doc(template: dict, g: Grid, schedule: str) -> dict:
    doc = copy.deepcopy(template)
    for k in ("runs", "tokens_per_param"):
        doc.pop(k, None)
    doc["grid"] = "isoflop"
    doc["models"] = list(g.models)
    doc["budgets"] = [float(c) for c in g.budgets]
    cons = dict(doc.get("constraints") or {})
    for key, v in zip(("min_tokens_per_param", "max_tokens_per_param"), g.band):
        if v is None:
            cons.pop(key, None)
        else:
            cons[key] = float(v)
    doc["constraints"] = cons
    doc.setdefault("train", {})["schedule"] = schedule
    doc.pop("replicates", None)
    if g.seeds:
        doc["replicates"] = {m: int(k) for m, k in g.seeds.items() if m in g.models and k > 1}
    return doc


def _train(template: dict, source: str) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    raw = template.get("train") or {}
    return TrainConfig(**{k: v for k, v in raw.items() if k in known})


def _speech_rows(rows):
    return [r for r in rows if r["arm"] != "textlm"]


def _row_flops(r: dict, cooldown_frac: float) -> float:
    """Compute of one planned run as sweeps.plan.plan_totals counts it (6ND, cooldown decay tokens included)."""
    return 6.0 * r["params"] * (r["tokens"] + wsd_branch_tokens(r.get("cooldowns") or [], cooldown_frac))


def _laws(args, arms: list[str]) -> dict:
    if Path(args.law).is_file():
        laws = laws_from_fits(args.law)
        if len(laws) == 1:
            laws = {arm: next(iter(laws.values())) for arm in arms}
    else:
        law = parse_law(args.law)
        laws = {arm: (law, None) for arm in arms}
    want = args.arm or [a for a in arms if a in laws]
    missing = [a for a in want if a not in laws]
    if missing or not want:
        raise ConfigError(f"has no parametric law for arm(s) {', '.join(missing or arms)} (it has {', '.join(laws)})",
                          source=args.law, field="arms")
    out = {}
    for arm in want:
        law, measured = laws[arm]
        noise, told = resolve_noise(measured, args)
        out[arm] = (law, noise, told)
    return out


def _score(widths: dict, laws: dict, target: str, kind: str) -> float:
    """The worst arm's width: as a fraction of the verdict's 'wide' limit for an exponent, relative to the
    loss for the loss."""
    out = 0.0
    for arm, w in widths.items():
        law = laws[arm][0]
        out = max(out, w[kind][target] / (wide_limit(law, target) if target != "loss" else 1.0))
    return out


def _evaluate(g: Grid, laws: dict, args) -> None:
    g.widths = {}
    for arm, (law, noise, _) in laws.items():
        try:
            w = predict(law, g.N, g.D, g.runs, noise, compute=args.at_compute, delta=args.huber_delta)
            w["max"] = {k: max(w["bootstrap"][k], w["sampling"][k]) for k in w["bootstrap"]}
            g.widths[arm] = w
        except (ConfigError, np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
            g.valid, g.why = False, "singular design"
            return


def _describe(g: Grid, params: dict) -> str:
    sizes = ",".join(m for m in g.models)
    band = f"{g.band[0] or 0:g}-{g.band[1] or math.inf:g}"
    counts = {m: int(g.seeds.get(m, 1)) for m in g.models}
    if len(set(counts.values())) == 1:
        k = next(iter(counts.values()))
        reps = f", {k} seeds of every size" if k > 1 else ""
    else:
        reps = ", " + "; ".join(f"{k} seed{'s' if k > 1 else ''} of {','.join(m for m in g.models if counts[m] == k)}"
                                for k in sorted(set(counts.values()), reverse=True))
    return (f"{len(g.models)} sizes [{sizes}], {len(g.budgets)} budgets {g.budgets[0]:.3g}-{g.budgets[-1]:.3g}, "
            f"D/N {band}{reps}")


def run(args) -> int:
    template_path = Path(args.template)
    source = str(template_path)
    if not template_path.is_file():
        raise ConfigError("sweep file not found", source=source)
    template = yamlio.load(template_path, what="sweep file")
    if not isinstance(template, dict):
        raise ConfigError("a sweep file must be a mapping", source=source)
    base = template_path.parent
    train = _train(template, source)
    schedule = args.schedule or train.schedule
    with tempfile.TemporaryDirectory(prefix="scaling-design-") as tmp:
        work = Path(tmp)
        today_rows = plan_of(template, base, work, "today", source=source)
        speech = _speech_rows(today_rows)
        arms = list(dict.fromkeys(r["arm"] for r in speech))
        laws = _laws(args, arms)
        ladder = [m.strip() for m in args.ladder.split(",")] if args.ladder else [
            m if isinstance(m, str) else m.get("name") for m in template.get("models") or []]
        # the parameters of every ladder size as the plan counts them: a tokens-per-parameter grid of the ladder
        probe = {k: v for k, v in template.items() if k not in ("budgets", "runs", "constraints")}
        probe.update(grid="tokens_per_param", tokens_per_param=[1000.0], models=ladder)
        probe_rows = plan_of(probe, base, work, "ladder", source=f"{source} (with --ladder)")
        params = {}
        for r in _speech_rows(probe_rows):
            params.setdefault(r["arm"], {})[r["model"]] = float(r["params"])
        design_arm = next(iter(laws))
        par = params[design_arm]
        n_arms = len(arms)
        cons = template.get("constraints") or {}
        setting = Setting(schedule=schedule, seq_len=train.seq_len, tokens_per_step=train.tokens_per_step,
                          min_steps=int(cons.get("min_steps", 1)), cooldown_frac=train.cooldown_frac,
                          flops_per_second=args.flops_per_second or 0.0, run_seconds=args.run_seconds,
                          point_seconds=args.point_seconds, workers=args.workers)
        # today's grid, exactly as planned
        today = Grid(tuple(ladder), (), (cons.get("min_tokens_per_param"), cons.get("max_tokens_per_param")))
        pts = plan_points(today_rows)
        N, D, C, R = pts[design_arm]
        today.N, today.D, today.C, today.runs = N, D, C, R
        today.flops = sum(_row_flops(r, train.cooldown_frac) for r in speech)
        today.models = tuple(dict.fromkeys(r["model"] for r in speech))
        today.budgets = tuple(float(c) for c in template.get("budgets") or []) if isinstance(
            template.get("budgets"), list) else tuple(sorted(set(C.tolist())))
        if setting.flops_per_second:
            today.seconds = setting.grid_seconds([setting.run_seconds_of(_row_flops(r, train.cooldown_frac),
                                                                         1 + len(r.get("cooldowns") or []))
                                                  for r in speech])
        _evaluate(today, laws, args)
        if not today.valid:
            raise ConfigError("today's grid does not identify the law (a singular design)", source=source)
        limit = args.max_flops or (args.gpu_hours * 3600.0 * args.mfu * args.gpu_flops if args.gpu_hours else today.flops)
        kind, target = args.interval, args.target
        today_score = _score(today.widths, laws, target, kind)

        searched, feasible = 0, []
        c_max = max(r["budget"] or 6.0 * r["params"] * r["tokens"] for r in speech)
        # budget spans: a few short ones, today's own and twice it (a wide template grid stays in the search)
        c_lo = min(r["budget"] or 6.0 * r["params"] * r["tokens"] for r in speech)
        spans = sorted({5.0, 10.0, 20.0, round(c_max / c_lo, 6), round(2 * c_max / c_lo, 6)} - {1.0})
        for models, budgets, band, seeds in candidates(ladder, c_max, today.band, min_sizes=args.min_sizes, spans=spans,
                                                       seeds=args.seeds):
            g = build(models, budgets, band, par, setting, seeds)
            searched += 1
            if not g.valid:
                continue
            g.flops *= n_arms
            if not math.isnan(g.seconds):
                g.seconds *= n_arms
            over = g.flops > limit * (1 + 1e-9) or (args.max_seconds is not None and g.seconds > args.max_seconds)
            if over and g.flops > 2 * limit:  # the frontier beyond twice the limit is not printed
                continue
            _evaluate(g, laws, args)
            if g.valid:
                g.why = "over the limit" if over else ""
                feasible.append(g)
        feasible.sort(key=lambda g: (g.flops, _score(g.widths, laws, target, kind)))
        frontier, best = [], math.inf
        for g in feasible:
            s = _score(g.widths, laws, target, kind)
            if s < best * (1 - 1e-3):
                frontier.append(g)
                best = s
        within = [g for g in feasible if not g.why]
        if not within:
            raise ConfigError(f"no candidate grid fits the limit ({limit:.3g} FLOPs"
                              + (f", {args.max_seconds:g} s" if args.max_seconds else "") + ")", field="--max-flops")
        ranked = sorted(within, key=lambda g: _score(g.widths, laws, target, kind))

        print(_header(args, laws, target, kind, limit, n_arms))
        print(_row("today's grid", today, laws, target, kind, today_score))
        print(f"searched {searched:,} candidate grids; {len(within):,} within the limit")
        print("frontier (compute vs predicted width; '*' over the limit):")
        step = max(1, len(frontier) // max(args.frontier, 1))
        for g in frontier[::-1][::step][::-1]:
            print(_row("*" if g.why else " ", g, laws, target, kind, _score(g.widths, laws, target, kind)))
        print("best under the limit:")
        for i, g in enumerate(ranked[:max(args.confirm, 1)]):
            print(_row(f"#{i + 1}", g, laws, target, kind, _score(g.widths, laws, target, kind)))
            print(f"      {_describe(g, par)}")
        winner = ranked[0]
        today_fits = today.flops <= limit * (1 + 1e-9) and (
            args.max_seconds is None or math.isnan(today.seconds) or today.seconds <= args.max_seconds)
        if today_fits and _score(winner.widths, laws, target, kind) >= today_score * (1 - 1e-3):
            print("no candidate under the limit beats today's grid: it is the design"
                  + (f"; {args.out} gets the template's grid unchanged" if args.out else ""))
            if args.out:
                out = Path(args.out)
                doc = copy.deepcopy(template)
                if out.resolve().parent != base.resolve():
                    doc = _portable(doc, base)
                atomic.write_text(out, f"# scaling design: no grid under {limit:.3g} FLOPs beat the template's own "
                                       f"({kind} width of {target}); this is it\n"
                                  + __import__("yaml").safe_dump(doc, sort_keys=False))
                print(f"wrote {out}")
            return 0
        if args.confirm:
            winner = _confirm(args, template, base, work, today_rows, ranked[:args.confirm], laws, schedule, source)
        if args.out:
            doc = _grid_doc(template, winner, schedule)
            out = Path(args.out)
            if out.resolve().parent != base.resolve():
                doc = _portable(doc, base)
            plan_of(doc, out.resolve().parent, work, "winner", source=str(out))  # the sweep schema checks it
            text = _comment(winner, today, laws, target, kind, args) + __import__("yaml").safe_dump(doc, sort_keys=False)
            atomic.write_text(out, text)
            print(f"wrote {out}")
    return 0


def _confirm(args, template, base, work, today_rows, top, laws, schedule, source) -> Grid:
    print(f"confirmed by {args.replicates} simulated studies per arm ({args.resamples} bootstrap resamples each):")
    results = []
    entries = [("today's grid", None, today_rows)] + [
        (f"#{i + 1}", g, plan_of(_grid_doc(template, g, schedule), base, work, f"cand{i}", source=source))
        for i, g in enumerate(top)]
    for name, g, rows in entries:
        pts = plan_points(rows)
        worst = 0.0
        parts = []
        for arm, (law, noise, _) in laws.items():
            N, D, C, R = pts[arm]
            res = simulate(N, D, law, noise=noise, runs=R, replicates=args.replicates, resamples=args.resamples,
                           seed=args.seed, budgets=C, huber_delta=args.huber_delta)
            worst = max(worst, res["flagged"])
            t = args.target if args.target in ("alpha", "beta", "a") else "a"
            parts.append(f"{arm}: flagged {100 * res['flagged']:.0f}%, median {t} width {res['width'][t]:.3g} "
                         f"({res['width_ratio'][t]:.2f}x limit), spread {res['spread'][t]:.3g}")
        print(f"  {name:<12} " + "; ".join(parts))
        if g is not None:
            results.append((worst, top.index(g), g))
    return min(results, key=lambda x: (x[0], x[1]))[2]


def _header(args, laws, target, kind, limit, n_arms) -> str:
    lines = [f"design of a grid for arm(s) {', '.join(laws)} ({n_arms} arm(s) share it): target the {kind} 95% "
             f"width of {target}" + (f" at {args.at_compute:.3g} FLOPs" if target == "loss" else "")
             + f"; limit {limit:.3g} FLOPs (6ND, all arms, cooldown decay included)"
             + (f", {args.max_seconds:g} s" if args.max_seconds else "") + f"; Huber delta {args.huber_delta:g}"]
    for arm, (law, noise, told) in laws.items():
        lines.append(f"  {arm}: L = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.3g} + {law.B:.4g}/D^{law.beta:.3g} "
                     f"(a = {law.a:.3g}); noise {format_noise(noise.to_dict())} ({told})")
    lines.append(f"  grid          FLOPs      time(s)  sizes  budgets  points/runs  {kind + ' width':<10}  x limit  "
                 f"{'sampling' if kind == 'bootstrap' else 'bootstrap'} width")
    return "\n".join(lines)


def _row(name: str, g: Grid, laws, target, kind, score) -> str:
    arm = max(g.widths, key=lambda a: g.widths[a][kind][target] / (wide_limit(laws[a][0], target)
                                                                   if target != "loss" else 1.0))
    w = g.widths[arm]
    other = "sampling" if kind == "bootstrap" else "bootstrap"
    secs = "-" if math.isnan(g.seconds) else f"{g.seconds:.0f}"
    ratio = f"{score:.2f}" if target != "loss" else "-"
    return (f"  {name:<12}  {g.flops:<9.3g}  {secs:<7}  {len(g.models):<5}  {len(g.budgets):<7}  "
            f"{g.n_points:>3}/{g.n_runs:<7}  {w[kind][target]:<10.3g}  {ratio:<7}  {w[other][target]:.3g} ({arm})")


def _comment(g: Grid, today: Grid, laws, target, kind, args) -> str:
    arm = max(g.widths, key=lambda a: g.widths[a][kind][target] / (wide_limit(laws[a][0], target)
                                                                   if target != "loss" else 1.0))
    lines = [f"Designed by `scaling design` for the {kind} 95% width of {target} under the pilot law of "
             f"{args.law}: predicted {g.widths[arm][kind][target]:.3g} ({arm}) against today's "
             f"{today.widths[arm][kind][target]:.3g}, at {g.flops:.3g} FLOPs against {today.flops:.3g}",
             f"{len(g.models)} sizes x {len(g.budgets)} budgets, tokens per parameter {g.band[0]}-{g.band[1]}: "
             f"{g.n_points} points from {g.n_runs} runs per arm ({args.schedule or 'template'} schedule)"]
    return "".join(f"# {line}\n" for line in lines)
