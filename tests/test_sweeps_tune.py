"""`scaling tune`: optuna studies per size in SQLite, tuned.yaml, and a sweep that uses it."""
import optuna
import pytest
import yaml

from conftest import write_sweep
from scaling.cli import main
from sweeps.grid import resolve
from sweeps.schema import load_sweep


def test_tuning_two_sizes_feeds_the_sweep(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, arms=["textless"],
                        tuning={"tokens": 1024, "lr_min": 1e-4, "lr_max": 3e-2, "trials": 2},
                        hyperparameters={"from_study": "tuned.yaml"})
    # the sweep refuses to resolve before the study has run
    assert main(["plan", str(sweep)]) == 2
    assert "scaling tune" in capsys.readouterr().err
    assert main(["tune", str(sweep)]) == 0
    assert capsys.readouterr().out.count("trial ") == 4
    tuned = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
    assert set(tuned) == {"toy-xs", "toy-s"}
    storage = f"sqlite:///{tmp_path / 'tuning.db'}"
    for m in ("toy-xs", "toy-s"):
        study = optuna.load_study(study_name=f"tiny-{m}", storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 2 and tuned[m]["trials"] == 2
        assert tuned[m]["lr"] == pytest.approx(study.best_params["lr"])
        assert tuned[m]["val_loss_speech"] == pytest.approx(min(t.value for t in done))
        assert 1e-4 <= tuned[m]["lr"] <= 3e-2
    # rerunning adds no trial
    assert main(["tune", str(sweep)]) == 0
    assert "trial" not in capsys.readouterr().out.replace("tuned values", "")
    specs = resolve(load_sweep(sweep))
    for s in specs:
        assert s.train.lr == pytest.approx(tuned[s.model]["lr"])
        assert s.train.min_lr == pytest.approx(3e-4 * tuned[s.model]["lr"] / 3e-3)
    # an inline value wins over the study
    sw2 = write_sweep(tmp_path / "sweep.yaml", prepared, arms=["textless"],
                      hyperparameters={"from_study": "tuned.yaml", "lr": {"toy-s": 1e-3}})
    lrs = {s.model: s.train.lr for s in resolve(load_sweep(sw2))}
    assert lrs["toy-s"] == 1e-3 and lrs["toy-xs"] == pytest.approx(tuned["toy-xs"]["lr"])
