"""`scaling tune`: an optuna study per model size at a small token budget, for the learning rate
(and, if ``tuning.batch_sizes`` lists candidates, the batch size).

Studies live in SQLite next to the sweep (``tuning.db``) by default, or in any optuna RDB URL
(``--storage postgresql://...``) so that workers on many nodes share them; each trial is a run
directory under ``<output>/tuning/runs/`` (its id hashes the trial's hyperparameters, so a
repeated suggestion reuses the finished run). Trials are sampled by TPE, never by optuna's grid
sampler, so concurrent workers cannot lose or duplicate grid points; a study stops at
``--trials`` finished trials in total, whoever ran them. The best values per size go to
``tuned.yaml``, which a sweep reads with ``hyperparameters: {from_study: tuned.yaml}``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scaling import atomic
from scaling.errors import ConfigError
from scaling.rundir import RunDir
from scaling.spec import RunSpec
from sweeps.schema import Sweep, _check_tuning


def default_storage(sweep: Sweep) -> str:
    return f"sqlite:///{(sweep.path.parent / 'tuning.db').resolve()}"


def trial_spec(sweep: Sweep, model: str, lr: float, batch_size: int) -> RunSpec:
    from sweeps.grid import _fingerprint, _manifest, shape_of

    t = sweep.tuning
    manifest = _manifest(sweep, t.arm)
    train = replace(sweep.train, lr=lr, min_lr=sweep.train.min_lr * lr / sweep.train.lr, batch_size=batch_size,
                    schedule="cosine", eval_every=0)
    tokens = max(train.tokens_per_step, t.tokens // train.seq_len * train.seq_len)
    return RunSpec(arm=t.arm, model=model, shape=shape_of(sweep, model, manifest, arm=t.arm),
                   tokens=tokens, streams=dict(sweep.streams[t.arm]), init="random",
                   data_fingerprint=_fingerprint(sweep, manifest, t.arm), train=train, seed=sweep.seed,
                   data_dir=str(sweep.data_of(t.arm)), sweep=f"{sweep.name}-tuning")


def tune(sweep: Sweep, *, trials: int | None = None, storage: str | None = None, models: list[str] | None = None,
         echo=print) -> dict[str, dict]:
    """Run the studies up to ``trials`` finished trials each; write and return the tuned values."""
    import optuna

    from trainer.execute import execute

    if sweep.data is None:
        raise ConfigError("is required to tune (trials train)", source=str(sweep.path), field="data")
    _check_tuning(sweep.tuning, sweep.train, str(sweep.path), sweep.arms)
    t = sweep.tuning
    trials = trials or t.trials
    storage = storage or t.storage or default_storage(sweep)
    runs_dir = sweep.output / "tuning" / "runs"
    _previous(Path(sweep.path.parent / t.output))  # a broken tuned.yaml is refused before any trial trains
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuned: dict[str, dict] = {}
    for model in models or sweep.models:
        if model not in sweep.models:
            raise ConfigError("is not a model of the sweep", source=str(sweep.path), field="--models", value=model)

        def objective(trial, model=model):
            lr = trial.suggest_float("lr", t.lr_min, t.lr_max, log=True)
            bs = trial.suggest_categorical("batch_size", t.batch_sizes) if t.batch_sizes else sweep.train.batch_size
            spec = trial_spec(sweep, model, lr, bs)
            run = RunDir(runs_dir / spec.run_id)
            rec = run.result() if run.status == "done" else None
            if rec is None:
                rec = execute(run.create(spec))
            trial.set_user_attr("run_id", spec.run_id)
            echo(f"tune {model}: trial {trial.number} lr={lr:.3g} batch_size={bs} -> val_loss_speech={rec['val_loss_speech']:.4f}")
            return rec["val_loss_speech"]

        study = optuna.create_study(study_name=f"{sweep.name}-{model}", storage=storage, direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=sweep.seed), load_if_exists=True)
        # MaxTrialsCallback counts finished trials across all workers sharing the study
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if done < trials:
            study.optimize(objective, n_trials=trials - done,
                           callbacks=[optuna.study.MaxTrialsCallback(trials, states=(optuna.trial.TrialState.COMPLETE,))])
        best = study.best_trial
        tuned[model] = {"lr": float(best.params["lr"]), "val_loss_speech": float(best.value),
                        "trials": len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))),
                        "study": study.study_name, "tokens": trial_spec(sweep, model, best.params["lr"], sweep.train.batch_size).tokens}
        if "batch_size" in best.params:
            tuned[model]["batch_size"] = int(best.params["batch_size"])
    out = Path(sweep.path.parent / t.output)
    previous = _previous(out)  # again: other workers may have written theirs meanwhile
    atomic.write_yaml(out, {**previous, **tuned})
    echo(f"tuned values for {len(tuned)} sizes in {out} (studies in {storage})")
    return tuned


def _previous(out: Path) -> dict:
    """The tuned values already in ``out`` (tuned.yaml), {} when there is none."""
    if not out.is_file():
        return {}
    from scaling import yamlio

    previous = yamlio.load(out, what="tuned values file") or {}
    if not isinstance(previous, dict):
        raise ConfigError("must map model names to tuned values", source=str(out))
    return previous


def _cmd_tune(args) -> int:
    from scaling.spec import check_text
    from sweeps.schema import MAX_TRIALS, load_sweep

    if args.trials is not None and not 1 <= args.trials <= MAX_TRIALS:
        raise ConfigError(f"must be a whole number from 1 to {MAX_TRIALS:,}", field="--trials", value=args.trials)
    if args.storage is not None:
        check_text(args.storage, field="--storage")
    sweep = load_sweep(args.sweep)
    tune(sweep, trials=args.trials, storage=args.storage, models=args.models.split(",") if args.models else None)
    return 0


def register(sub) -> None:
    p = sub.add_parser("tune", help="optuna study per model size for the learning rate (and batch size)")
    p.add_argument("sweep", help="the sweep file (YAML); its tuning block sets up the study")
    p.add_argument("--trials", type=int, default=None, help="finished trials per size (default: tuning.trials)")
    p.add_argument("--storage", default=None, help="optuna storage URL (default sqlite:///<sweep dir>/tuning.db)")
    p.add_argument("--models", default=None, help="comma-separated subset of the sweep's models")
    p.set_defaults(func=_cmd_tune)
