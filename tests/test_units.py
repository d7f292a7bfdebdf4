"""HuBERT unit extraction on the two real SlamKit recordings, with a tiny random HuBERT."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from scaling.cli import main
from scaling.datadir import MAX_UNITS
from scaling.errors import ConfigError
from trainer.units.dedup import dedup, expand
from trainer.units.extract import extract_units, list_audio
from trainer.units.hubert import HubertExtractor, load_audio
from trainer.units.kmeans import KMeansQuantizer, load_centroids

from conftest import SLAMKIT_EXAMPLE

AUDIO = SLAMKIT_EXAMPLE / "audio"
FEATURES = SLAMKIT_EXAMPLE / "features.jsonl"
A1, A2 = str(AUDIO / "audio1.flac"), str(AUDIO / "audio2.flac")  # 14.1 s and 15.9 s


MHUBERT_25HZ_CONV = dict(conv_dim=(16,) * 8, conv_kernel=(10, 3, 3, 3, 3, 2, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2, 2))


def _tiny_hubert(path: Path, norm: str, conv=MHUBERT_25HZ_CONV) -> Path:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                       **conv,  # mHuBERT-25Hz's conv stack (640 samples per frame), narrower
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                       feat_extract_norm=norm, do_stable_layer_norm=(norm == "layer"))
    HubertModel(cfg).eval().save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubert")
    return {"layer": _tiny_hubert(root / "layer", "layer"), "group": _tiny_hubert(root / "group", "group")}


@pytest.fixture(scope="module")
def waves():
    return load_audio(A1), load_audio(A2)


def _random_centroids(extractor, wave, k=50, seed=0):
    """Random frames of a recording (so that many centroids are in use), jittered."""
    feats, = extractor.features([wave])
    rng = np.random.default_rng(seed)
    c = feats[rng.choice(len(feats), size=k, replace=False)]
    return (c + 0.01 * c.std() * rng.normal(size=c.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def centroids(tmp_path_factory, models, waves):
    path = tmp_path_factory.mktemp("km") / "km.npy"
    np.save(path, _random_centroids(HubertExtractor(models["layer"], layer=2), waves[1]))
    return path


def test_dedup_roundtrip():
    u, d = dedup([5, 5, 7, 5, 5, 5, 1])
    assert u.tolist() == [5, 7, 5, 1] and d.tolist() == [2, 1, 3, 1]
    assert expand(u, d).tolist() == [5, 5, 7, 5, 5, 5, 1]
    assert dedup([])[0].size == 0


def test_load_audio_resamples_to_16k_mono(tmp_path, waves):
    import soundfile as sf

    x = waves[0][:16000]
    stereo = np.stack([x[::2], x[::2]], axis=1)  # 8 kHz stereo, 1 s
    sf.write(tmp_path / "a.wav", stereo, 8000)
    y = load_audio(tmp_path / "a.wav")
    assert y.ndim == 1 and y.dtype == np.float32 and len(y) == 16000
    assert len(waves[0]) == 225360  # 16 kHz file is untouched


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_units_do_not_depend_on_batching(models, waves, norm):
    ex = HubertExtractor(models[norm], layer=2)
    km = KMeansQuantizer(_random_centroids(ex, waves[1]))
    a, b = waves
    alone, = ex.features([a])
    b_batched, a_batched = ex.features([b, a])  # a is padded to b's length
    # frame counts from the conv stack agree with the mHuBERT-25Hz units SlamKit wrote for these files
    slam = {Path(r["file_name"]).stem: sum(r["duration"]) for r in map(json.loads, FEATURES.read_text().splitlines())}
    assert len(alone) == ex.n_frames(len(a)) == slam["audio1"] == 352
    assert len(b_batched) == slam["audio2"]
    assert np.array_equal(km(alone), km(a_batched))
    np.testing.assert_allclose(alone, a_batched, atol=1e-5)
    assert len(set(km(alone).tolist())) > 5  # the test is not vacuous: many different units


def test_group_norm_would_break_under_padding(models, waves):
    """The guard matters: padding a group-norm encoder changes features, so such models run unpadded."""
    ex = HubertExtractor(models["group"], layer=2)
    assert ex.group_norm
    alone, = ex.features([waves[0]])
    ex.group_norm = False  # pretend: batch with padding + mask
    _, padded = ex.features([waves[1], waves[0]])
    assert np.abs(alone - padded).max() > 1e-3


@pytest.mark.parametrize("norm", ["layer", "group"])  # stable-layer-norm and post-norm encoders
@pytest.mark.parametrize("layer", [1, 3])
def test_layer_selects_hidden_state(models, waves, norm, layer):
    from transformers import HubertModel

    m = HubertModel.from_pretrained(str(models[norm])).eval()
    with torch.inference_mode():
        ref = m(torch.from_numpy(waves[0][None]), output_hidden_states=True).hidden_states[layer][0].numpy()
    got, = HubertExtractor(models[norm], layer=layer).features([waves[0]])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    with pytest.raises(ConfigError, match="layer"):
        HubertExtractor(models[norm], layer=4)


def test_too_short_audio_is_named(tmp_path, models, centroids):
    import soundfile as sf

    sf.write(tmp_path / "tiny.wav", np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(ConfigError, match="tiny.wav.*shorter than one HuBERT frame"):
        extract_units([str(tmp_path / "tiny.wav")], tmp_path / "o.jsonl", HubertExtractor(models["layer"], layer=2),
                      KMeansQuantizer.load(centroids), log=None)
    assert not (tmp_path / "o.jsonl").exists()


def test_quantizer_is_nearest_centroid():
    rng = np.random.default_rng(1)
    c, x = rng.normal(size=(20, 8)), rng.normal(size=(100, 8))
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(KMeansQuantizer(c)(x), brute)
    with pytest.raises(ConfigError, match="dimension"):
        KMeansQuantizer(c)(rng.normal(size=(3, 9)))


def test_centroid_formats(tmp_path):
    from safetensors.numpy import save_file

    c = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", c)
    save_file({"centroids": c}, str(tmp_path / "b.safetensors"))
    torch.save(torch.from_numpy(c), tmp_path / "c.pt")
    torch.save({"cluster_centers_": torch.from_numpy(c)}, tmp_path / "d.pt")
    for name in ("a.npy", "b.safetensors", "c.pt", "d.pt"):
        assert np.array_equal(load_centroids(tmp_path / name), c), name


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_kmeans_refused(tmp_path, capsys):
    with open(tmp_path / "km.bin", "wb") as fh:
        pickle.dump({"cluster_centers_": np.zeros((3, 2))}, fh)
    with pytest.raises(ConfigError, match="not read \\(unsafe\\)"):
        load_centroids(tmp_path / "km.bin")
    torch.save({"obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="accepted: .npy") as e:
        load_centroids(tmp_path / "evil.pt")
    assert "evil.pt" in str(e.value) and "unpickled!" not in capsys.readouterr().out
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="cannot read centroids"):
        load_centroids(tmp_path / "obj.npy")
    np.save(tmp_path / "k1000.npy", np.zeros((1000, 2)))  # an inventory above 500: `data prepare --units 1000`
    assert load_centroids(tmp_path / "k1000.npy").shape == (1000, 2)
    np.save(tmp_path / "big.npy", np.zeros((MAX_UNITS + 1, 2)))
    with pytest.raises(ConfigError, match=str(MAX_UNITS + 1)):
        load_centroids(tmp_path / "big.npy")


def test_extract_is_resumable(tmp_path, models, centroids, waves):
    ex = HubertExtractor(models["layer"], layer=2)
    km = KMeansQuantizer.load(centroids)
    out = tmp_path / "features.jsonl"
    res = extract_units([A2, A1], out, ex, km, log=None)
    assert res == {"files": 2, "skipped": 0, "seconds": res["seconds"]}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["file_name"] for r in rows) == sorted([A1, A2])
    for r, w in zip(sorted(rows, key=lambda r: r["file_name"]), waves):
        u, d = dedup(km(ex.features([w])[0]))
        assert r["units"] == u.tolist() and r["duration"] == d.tolist()
        assert sum(r["duration"]) == ex.n_frames(len(w))
    # a kill tore the last line: the rerun drops it and redoes only that file
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    res = extract_units([A2, A1], out, ex, km, log=None)
    assert res["files"] == 1 and res["skipped"] == 1
    assert out.read_text() == text
    assert extract_units([A2, A1], out, ex, km, log=None)["files"] == 0


def test_extract_cli(tmp_path, models, centroids, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{A1}\n\n{A2}\n")
    assert list_audio(lst) == [A1, A2] and list_audio(AUDIO) == [A1, A2]
    out = tmp_path / "f.jsonl"
    assert main(["data", "extract", str(AUDIO), "--out", str(out), "--model", str(models["layer"]),
                 "--kmeans", str(centroids), "--layer", "2"]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["data", "extract", str(lst), "--out", str(tmp_path / "g.jsonl"), "--model", str(models["layer"]),
                 "--layer", "2"]) == 2
    assert "--kmeans" in capsys.readouterr().err
    assert not (tmp_path / "g.jsonl").exists()


def test_extract_rejects_wrong_frame_rate_and_dims(tmp_path, models, centroids):
    hz50 = _tiny_hubert(tmp_path / "hz50", "layer", conv=dict(conv_dim=(16,) * 4, conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4)))
    with pytest.raises(ConfigError, match="50 frames/s"):
        extract_units([A1], tmp_path / "o.jsonl", HubertExtractor(hz50, layer=1), KMeansQuantizer.load(centroids), log=None)
    with pytest.raises(ConfigError, match="dimension 8"):
        extract_units([A1], tmp_path / "o.jsonl", HubertExtractor(models["layer"], layer=1),
                      KMeansQuantizer(np.zeros((4, 8))), log=None)
    assert not (tmp_path / "o.jsonl").exists()


def test_extract_shards_merge_to_one_runs_file(tmp_path, models, centroids):
    from trainer.units.extract import merge_shards, shard_output

    ex = HubertExtractor(models["layer"], layer=2)
    km = KMeansQuantizer.load(centroids)
    import shutil

    shutil.copy(A2, tmp_path / "copy.flac")
    files = [A2, A1, str(tmp_path / "copy.flac")]  # three files: shard 0 of 2 holds two
    whole = extract_units(files, tmp_path / "one.jsonl", ex, km, log=None)
    assert whole["files"] == 3
    out = tmp_path / "merged.jsonl"
    with pytest.raises(ConfigError, match="2 shard output"):
        merge_shards(files, out, 2)
    assert [extract_units(files, out, ex, km, log=None, shard=(i, 2))["files"] for i in range(2)] == [2, 1]
    assert shard_output(out, (1, 2)).name == "merged.00001-of-00002.jsonl"
    assert merge_shards(files, out, 2) == 3
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="made from another list"):
        merge_shards([files[1], files[0], files[2]], out, 2)


def test_extract_output_is_locked(tmp_path, models, centroids):
    from trainer.units.extract import locked

    out = tmp_path / "f.jsonl"
    with locked(out):
        with pytest.raises(ConfigError, match=r"another extraction is writing this file \(lock held by pid"):
            extract_units([A1], out, HubertExtractor(models["layer"], layer=2), KMeansQuantizer.load(centroids), log=None)
    assert not out.exists()
    assert extract_units([A1], out, HubertExtractor(models["layer"], layer=2), KMeansQuantizer.load(centroids), log=None)["files"] == 1


def test_extract_from_a_datasets_folder(tmp_path, models, centroids, capsys):
    """Audio published as a Hugging Face dataset (encoded bytes in an Audio column) gives the units of the files."""
    datasets = pytest.importorskip("datasets")  # in the [test] extra
    audio = [{"bytes": Path(f).read_bytes(), "path": Path(f).name} for f in (A1, A2)]
    ds = datasets.Dataset.from_dict({"file_name": ["a/audio1.flac", "a/audio2.flac"], "audio": audio})
    ds.cast_column("audio", datasets.Audio(decode=False)).save_to_disk(str(tmp_path / "ds"))
    assert main(["data", "extract", str(tmp_path / "ds"), "--out", str(tmp_path / "ds.jsonl"), "--model",
                 str(models["layer"]), "--kmeans", str(centroids), "--layer", "2"]) == 0
    assert main(["data", "extract", str(AUDIO), "--out", str(tmp_path / "files.jsonl"), "--model", str(models["layer"]),
                 "--kmeans", str(centroids), "--layer", "2"]) == 0
    got = [json.loads(line) for line in (tmp_path / "ds.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "files.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in got] == ["a/audio1.flac", "a/audio2.flac"]
    assert [(r["units"], r["duration"]) for r in got] == [(r["units"], r["duration"]) for r in ref]
