"""The GPU bench's records (``scaling bench throughput/gpu --json``) against ``scaling memory``.

Each record holds a measured peak (``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` over
the training steps, weights included) and the configuration that produced it; ``compare`` rebuilds
the model shape the bench built, recomputes the estimate for that configuration with the current
code, and says which rows the estimate does not model and why. ``tests/test_memory_and_init.py``
holds the modelled rows to 10%; ``benchmarks/bench_memory_model.py`` prints the table.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from scaling.errors import ConfigError
from scaling.flops import count_params
from scaling.memory import estimate, speech_shape
from scaling.shapes import KNOWN, ModelShape
from trainer.bench import bench_vocab

# why a row is not modelled: the estimate is eager, chunked-loss and present-code only
UNMODELLED = {
    "compile": "torch.compile'd blocks: Inductor's partitioner decides what a fused block saves and recomputes "
               "(fewer activations than eager); the estimate is the eager block's, an upper bound",
    "liger": "Liger's fused linear cross-entropy (gradients computed in the forward, ~tokens x d logits per chunk); "
             "the estimate is the chunked loss's, an upper bound",
    "strided plain loss": "the plain loss of that run (cross-entropy over a strided [B, V, T] view of the logits) "
                          "was replaced in b77e6f5; no current code path allocates like it",
}


def record_rows(path: Path) -> list[dict]:
    """The per-variant records of one bench JSON (``bench gpu``: single + fsdp; ``bench throughput``: results)."""
    rec = json.loads(Path(path).read_text())
    if "single" in rec:
        return [dict(r, _source="gpu") for r in rec["single"] + [rec["fsdp"]]]
    if "results" in rec:
        return [dict(r, _source="throughput") for r in rec["results"]]
    raise ConfigError("neither a `bench gpu` record (single, fsdp) nor a `bench throughput` one (results)",
                      source=str(path), field="results")


def record_shape(r: dict, path: Path | str = "record") -> ModelShape:
    """The shape the bench built: ``bench gpu`` starts from ``speech_shape``, ``bench throughput`` from the
    published shape, both at the record's depth with ``bench_vocab`` rows; checked against ``params``."""
    m = re.match(r"[\w.\-]+", r["model"])
    base = m.group(0) if m else r["model"]
    if base not in KNOWN:
        raise ConfigError(f"unknown model; known: {', '.join(KNOWN)}", source=str(path), field="model", value=r["model"])
    shape = speech_shape(base) if r["_source"] == "gpu" else KNOWN[base]
    shape = dataclasses.replace(shape, num_layers=r["num_layers"])
    shape = shape.with_vocab(bench_vocab(shape))
    if count_params(shape).total != r["params"]:
        raise ConfigError(f"the rebuilt shape has {count_params(shape).total} parameters, the record {r['params']}",
                          source=str(path), field="params", value=r["params"])
    return shape


def unmodelled(r: dict, path: Path | str) -> str | None:
    """Why this row is not modelled: keys of ``UNMODELLED`` joined by '+', or None."""
    why = [k for k, hit in (("liger", r.get("liger")), ("compile", r.get("compiled_layers", 0)),
                            ("strided plain loss", Path(path).name == "gpu_strided_ce.json" and not r["chunked_ce"]))
           if hit]
    return "+".join(why) or None


def row_estimate(r: dict, shape: ModelShape):
    """The estimate for the row's configuration, as ``trainer.bench._estimate`` computes it now."""
    attention = "sdpa" if r["attn_implementation"] == "sdpa" and r.get("doc_mask", True) else "flash"  # varlen: no mask
    # records written before the optimizer was recorded: fused on one GPU, the per-tensor loop under FSDP
    adamw = r.get("optimizer") or ("per-tensor" if r["fsdp"] else "fused")
    return estimate(shape, model=r["model"], gpus=1, micro_batch=r["micro_batch"], seq=r["seq"],
                    activation_checkpointing=r["activation_checkpointing"], chunked_ce=r["chunked_ce"],
                    precision=r["precision"], overhead_gib=0.0, fsdp=r["fsdp"], attention=attention,
                    accumulation=r["accumulation"], compiled_ce=r.get("compiled_ce", False), adamw=adamw)


def compare(folder: Path | str) -> list[dict]:
    """One row per record in ``folder/*.json``: measured and estimated peak (GiB), error, why not modelled."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        for r in record_rows(path):
            plan = row_estimate(r, record_shape(r, path))
            out.append({"file": path.name, "variant": r["variant"], "model": r["model"], "micro_batch": r["micro_batch"],
                        "seq": r["seq"], "precision": r["precision"], "fsdp": r["fsdp"],
                        "measured_gib": r["peak_memory_gib"], "estimated_gib": plan.total_gib,
                        "error": plan.total_gib / r["peak_memory_gib"] - 1, "peak_at": plan.peak,
                        "recorded_estimate_gib": r["memory_estimate_gib"], "unmodelled": unmodelled(r, path)})
    return out
