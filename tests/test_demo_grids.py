"""The shipped demo grids are designed for a scaling law, checked at plan time (no training): enough
(N, D) points per arm from wsd cooldown branches, sizes spanning a decade of non-embedding parameters
where non-embedding parameters dominate, budgets spanning a decade with at least 3 sizes each, and a
corpus large enough that no run repeats the speech stream more than a few epochs. Planned at each
demo's vocabulary, as `scaling plan` does without a data folder: the CPU study's 158 corpus-alphabet
BPE tokens + 96 units + 2 markers = 256 rows, the GPU study's 512 BPE tokens + 500 units + 2 = 1,024."""
from importlib import resources

import pytest
import yaml

from scaling.flops import count_params
from sweeps.grid import resolve
from sweeps.schema import load_sweep
from trainer.data.synthetic import SynthConfig

#: demo preset -> (minimum points per arm, synthetic corpus the demo builds, text BPE size, unit inventory)
GRIDS = {"demo.yaml": (20, SynthConfig(), 158, 96), "demo_gpu.yaml": (20, SynthConfig.large(), 512, 500)}
TOKENS_PER_SPEECH_STORY = 450  # measured: the default corpus holds ~3.6M speech tokens in 8,000 stories


def _planned(tmp_path, name):
    cfg = yaml.safe_load(resources.files("sweeps").joinpath("configs", name).read_text(encoding="utf-8"))
    cfg.pop("data")
    cfg["vocab"], cfg["units"] = GRIDS[name][2:]  # the demo data's text BPE and unit inventory
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dropped = []
    return resolve(load_sweep(p), dropped=dropped), dropped


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_demo_grid_is_designed_for_a_law(tmp_path, name):
    min_points, corpus = GRIDS[name][:2]
    specs, dropped = _planned(tmp_path, name)
    # only a D/N band may drop grid points (never the step or size limits: those would be a broken design)
    assert all("tokens/param" in why for *_, why in dropped), dropped
    speech = [s for s in specs if s.arm != "textlm"]
    for arm in {s.arm for s in speech}:
        runs = [s for s in speech if s.arm == arm]
        points = [(s.model, t) for s in runs for t in (*s.cooldowns, s.tokens)]
        assert len(points) >= min_points, (arm, len(points))
        assert all(s.train.schedule == "wsd" for s in runs)
        counts = [count_params(s.shape) for s in runs]
        assert len(counts) >= 5
        non_emb = sorted(c.non_embedding for c in counts)
        assert non_emb[-1] / non_emb[0] >= 10, non_emb  # a decade of non-embedding parameters
        assert all(c.non_embedding > c.embedding for c in counts), [(c.non_embedding, c.embedding) for c in counts]
        budgets = sorted({s.budget for s in runs} | {b for s in runs for b in s.cooldown_budgets})
        assert budgets[-1] / budgets[0] >= 10 * (1 - 1e-9)  # a decade of compute
        sizes_at = {b: {s.model for s in runs if b == s.budget or b in s.cooldown_budgets} for b in budgets}
        assert all(len(m) >= 3 for m in sizes_at.values()), sizes_at  # an isoFLOP curve at every budget
        # the longest run reads the speech stream at most a few times
        epochs = max(s.tokens for s in runs) / (corpus.n_speech_stories * TOKENS_PER_SPEECH_STORY)
        assert epochs <= 3, epochs


def test_demo_seeds_never_share_a_run_seed_with_replicates():
    """With ``replicates: k`` the demo at seed S trains run seeds kS .. kS + k - 1: the demos at seeds 0, 1, 2
    are independent studies, not overlapping ones."""
    from scaling.demo import demo_sweep_text, run_seed
    from scaling import yamlio

    assert [run_seed({"replicates": 2}, s) for s in range(3)] == [0, 2, 4]
    assert [run_seed({"replicates": {"default": 1, "micro-8k": 3}}, s) for s in range(3)] == [0, 3, 6]
    assert [run_seed({}, s) for s in range(3)] == [0, 1, 2]
    for s in range(3):  # the shipped file: its own seed key rewritten, the rest (comments included) kept
        text = demo_sweep_text(False, s)
        cfg = yamlio.loads(text, source="demo.yaml")
        assert cfg["seed"] == run_seed(cfg, s) and text.count("seed:") == 1


def test_demo_replicates_flag_writes_the_count_and_refuses_a_bad_one(tmp_path, capsys):
    """``scaling demo --replicates K`` writes ``replicates: K`` into the demo's sweep (one key, the seed
    moved to K x S) and refuses 0 before anything is written."""
    from scaling import yamlio
    from scaling.cli import main
    from scaling.demo import demo_sweep_text

    text = demo_sweep_text(False, 1, "cpu", 2)
    cfg = yamlio.loads(text, source="demo.yaml")
    assert cfg["replicates"] == 2 and cfg["seed"] == 2 and text.count("\nreplicates:") == 1
    assert yamlio.loads(demo_sweep_text(False, 0, "cpu", 3), source="demo.yaml")["replicates"] == 3
    assert main(["demo", "--out", str(tmp_path / "d"), "--replicates", "0"]) == 2
    assert "'--replicates'" in capsys.readouterr().err and not (tmp_path / "d").exists()
