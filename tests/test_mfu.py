"""MFU = achieved model FLOP/s / (world size x per-device peak)."""
import pytest

from trainer.mfu import OVERRIDE_ENV, mfu, peak_flops


def test_equal_per_rank_throughput_gives_equal_mfu():
    per_rank, fpt, peak = 10_000.0, 6 * 5e8, 989e12
    one = mfu(per_rank * 1, fpt, 1, peak)
    two = mfu(per_rank * 2, fpt, 2, peak)  # global tokens/s doubles with two ranks at the same per-rank speed
    eight = mfu(per_rank * 8, fpt, 8, peak)
    assert one == pytest.approx(per_rank * fpt / peak)
    assert two == pytest.approx(one) and eight == pytest.approx(one)
    assert mfu(per_rank, fpt, 1, None) is None  # unknown device: no MFU rather than a wrong one


@pytest.mark.parametrize("name,tflops", [("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H200", 989),
                                         ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA GeForce RTX 3090", None)])
def test_peak_table(name, tflops, monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    assert peak_flops(name) == (None if tflops is None else pytest.approx(tflops * 1e12))


def test_peak_override(monkeypatch):
    monkeypatch.setenv(OVERRIDE_ENV, "500")
    assert peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(500e12) and peak_flops(None) == pytest.approx(500e12)
