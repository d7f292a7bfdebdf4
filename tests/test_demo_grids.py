"""The shipped demo grids are designed for a scaling law, checked at plan time (no training): enough
(N, D) points per arm from wsd cooldown branches, sizes spanning a decade of non-embedding parameters
where non-embedding parameters dominate, budgets spanning a decade, and a corpus large enough that no
run repeats the speech stream more than a few epochs. Planned at the demo data's vocabulary
(512 BPE tokens + 502 speech tokens = 1,024 rows), as `scaling plan` does without a data folder."""
from importlib import resources

import pytest
import yaml

from scaling.flops import count_params
from sweeps.grid import resolve
from sweeps.schema import load_sweep
from trainer.data.synthetic import SynthConfig

#: demo preset -> (minimum points per arm, synthetic corpus the demo builds)
GRIDS = {"demo.yaml": (20, SynthConfig()), "demo_gpu.yaml": (20, SynthConfig.large())}
TOKENS_PER_SPEECH_STORY = 450  # measured: the default corpus holds ~3.6M speech tokens in 8,000 stories


def _planned(tmp_path, name):
    cfg = yaml.safe_load(resources.files("sweeps").joinpath("configs", name).read_text(encoding="utf-8"))
    cfg.pop("data")
    cfg["vocab"] = 512  # the demo text BPE; speech rows = padded(512 + 502) = 1,024
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dropped = []
    return resolve(load_sweep(p), dropped=dropped), dropped


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_demo_grid_is_designed_for_a_law(tmp_path, name):
    min_points, corpus = GRIDS[name]
    specs, dropped = _planned(tmp_path, name)
    assert not dropped, dropped
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
        budgets = sorted({6 * c.total * t for s, c in zip(runs, counts) for t in (*s.cooldowns, s.tokens)})
        assert budgets[-1] / budgets[0] >= 10  # a decade of compute
        # the longest run reads the speech stream at most a few times
        epochs = max(s.tokens for s in runs) / (corpus.n_speech_stories * TOKENS_PER_SPEECH_STORY)
        assert epochs <= 3, epochs
