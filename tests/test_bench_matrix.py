"""`scaling bench gpu --matrix`: the fast recipe switch by switch against plain transformers, on the CPU
with toy shapes (the code the GPU run executes), in one process and in two (gloo, FSDP2)."""
import argparse
import json
import math
import os
import subprocess
import sys

import pytest

from scaling.errors import ConfigError

ARGS = ["bench", "gpu", "--matrix", "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0",
        "--compile-backend", "aot_eager"]


def _parser():
    from trainer import bench_cli as bench

    p = argparse.ArgumentParser(prog="scaling")
    bench.register(p.add_subparsers(dest="command", required=True))
    return p


def _check_record(rec: dict, world: int) -> None:
    from trainer.bench_matrix import CHAIN, groups

    assert rec["world_size"] == world and rec["tiny"] and rec["complete"]
    assert [g["group"] for g in rec["groups"]] == [g.name for g in groups(True)]
    first = rec["groups"][0]
    ran = [r["variant"] for r in first["results"]]
    assert ran[0] == "baseline" and len(ran) == 7  # plain + every switch the CPU runs
    # the chain adds the switches one by one; Liger's kernels are CUDA-only and say so
    assert ran[1:] == ["compile", "compile+varlen", "compile+varlen+bf16p", "compile+varlen+bf16p+cce",
                       "compile+varlen+bf16p+cce+mb4", "compile+varlen+bf16p+cce+sac+mb4"]
    assert [s["variant"] for s in first["skipped"]] == ["compile+varlen+bf16p+cce+ligerk"]
    assert "CUDA" in first["skipped"][0]["reason"] and not first["failed"]
    assert len(CHAIN) == 7
    for g in rec["groups"]:
        assert g["results"] and not g["failed"] and g["loss_agreement"]
        base = next(r for r in g["results"] if r["variant"] == "baseline")
        for r in g["results"]:
            # every switch is the same objective on the same rows: fp32 on a CPU, 1e-6 relative
            assert r["first_loss"] == pytest.approx(base["first_loss"], rel=1e-6), (g["group"], r["variant"])
            assert math.isfinite(r["tokens_per_s"]) and r["world_size"] == world
            assert r["fsdp"] == (world > 1 or r["variant"] != "baseline" and "bf16p" in r["variant"])
        assert g["best"]["train"]["micro_batch_size"] >= 1
    by = {r["variant"]: r for r in first["results"]}
    assert by["compile+varlen"]["attn_implementation"] == "varlen" and by["compile"]["attn_implementation"] == "sdpa"
    assert by["compile+varlen+bf16p+cce"]["compiled_ce"] and not by["compile+varlen+bf16p"]["compiled_ce"]
    assert by["compile+varlen+bf16p+cce+mb4"]["micro_batch"] == 4 and by["compile+varlen+bf16p+cce+mb4"]["accumulation"] == 1
    assert by["compile+varlen+bf16p+cce+sac+mb4"]["activation_checkpointing"] == "op"
    assert by["compile+varlen+bf16p+cce+sac+mb4"]["train"]["activation_checkpointing"] == "op"
    # the profile of the best variant: every entry once, shares summing to 1
    shares = [t["share"] for t in rec["profile"]["top"]]
    assert sum(shares) == pytest.approx(1.0, abs=1e-9) and all(s >= 0 for s in shares)


@pytest.mark.slow
def test_matrix_one_process(tmp_path, capsys, monkeypatch):
    import scaling.atomic as atomic

    writes = []
    real = atomic.write_json
    monkeypatch.setattr(atomic, "write_json", lambda path, obj: (writes.append(sum(len(g["results"]) for g in obj["groups"])),
                                                               real(path, obj))[1])
    out = tmp_path / "matrix.json"
    args = _parser().parse_args(ARGS + ["--json", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "best for 0.5B (toy-xs)" in text and "train:" in text and "skipped" in text
    rec = json.loads(out.read_text())
    _check_record(rec, world=1)
    n = sum(len(g["results"]) for g in rec["groups"])
    assert writes[-1] == n and len(writes) > n  # rewritten after every variant (and every skip), not only at the end


@pytest.mark.slow
def test_matrix_two_processes(tmp_path):
    out = tmp_path / "matrix.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # dynamo's own `eager` backend: the blocks are still traced whole (fullgraph), without AOT autograd's
    # second pass, which halves this test's time on 2 cores (the one-process test keeps aot_eager)
    args = [a if a != "aot_eager" else "eager" for a in ARGS]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29551",
                           "-m", "scaling.cli", *args, "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    _check_record(json.loads(out.read_text()), world=2)


def test_matrix_refuses_bad_arguments():
    p = _parser()
    args = p.parse_args(["bench", "gpu", "--matrix", "--device", "cpu"])
    with pytest.raises(ConfigError, match="--tiny"):
        args.func(args)
    args = p.parse_args(["bench", "gpu", "--matrix", "--device", "cpu", "--tiny", "--time-limit", "-1"])
    with pytest.raises(ConfigError, match="--time-limit"):
        args.func(args)


def test_matrix_time_limit_keeps_what_it_measured(tmp_path):
    """Past the time limit the remaining variants are recorded as skipped, and the record says incomplete."""
    from trainer.bench_matrix import bench_matrix

    rec = bench_matrix(device="cpu", tiny=True, steps=1, warmup=0, compile_backend="aot_eager", time_limit_s=1e-9)
    assert not rec["complete"]
    assert all(not g["results"] for g in rec["groups"])
    assert {s["reason"] for g in rec["groups"] for s in g["skipped"]} >= {"time limit"}


class _Event:
    def __init__(self, key, device_type, self_device, self_cpu, count=1):
        self.key, self.device_type, self.count = key, device_type, count
        self.self_device_time_total, self.self_cpu_time_total = self_device, self_cpu


def test_profile_counts_each_kernel_once():
    """The profiler reports a kernel's device time on the kernel and again on the operator that launched
    it; the shares count the kernels only, and with the '(other)' row they sum to 1."""
    from torch.autograd import DeviceType

    from trainer.bench import profile_shares

    events = [_Event("aten::mm", DeviceType.CPU, 300.0, 20.0), _Event("sm90_gemm_kernel", DeviceType.CUDA, 300.0, 0.0),
              _Event("aten::add", DeviceType.CPU, 100.0, 5.0), _Event("elementwise_kernel", DeviceType.CUDA, 100.0, 0.0),
              _Event("Memcpy DtoD", DeviceType.CUDA, 50.0, 0.0), _Event("tiny_kernel", DeviceType.CUDA, 1.0, 0.0)]
    p = profile_shares(events, device_type="cuda", top=2)
    assert p["total"] == 451.0  # 300 + 100 + 50 + 1: not 851
    assert [t["name"] for t in p["top"]] == ["sm90_gemm_kernel", "elementwise_kernel", "(other: 2 entries)"]
    assert p["top"][0]["share"] == pytest.approx(300 / 451)
    assert sum(t["share"] for t in p["top"]) == pytest.approx(1.0)
    cpu = profile_shares(events, device_type="cpu")
    assert cpu["total"] == 25.0 and sum(t["share"] for t in cpu["top"]) == pytest.approx(1.0)
