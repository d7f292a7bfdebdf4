"""Execute one planned run: train, evaluate the final checkpoint, write the result record."""
from __future__ import annotations

import os
import time

from scaling.flops import count_params, flops_6nd, flops_exact
from scaling.rundir import RunDir
from scaling.spec import RunSpec


def result_record(spec: RunSpec, summary: dict, metrics: dict, status: str = "done") -> dict:
    pc = count_params(spec.shape)
    tokens = summary["tokens"]
    flops = flops_6nd(pc.total, tokens)
    rec = {
        "run_id": spec.run_id, "arm": spec.arm, "model": spec.model,
        "params": pc.total, "non_embedding_params": pc.non_embedding,
        "tokens": tokens, "flops": flops, "flops_exact": flops_exact(spec.shape, tokens, spec.train.seq_len),
        "budget": spec.budget,
        "val_loss_speech": summary.get("val_loss_speech"), "val_loss_text": summary.get("val_loss_text"),
        "val_loss_interleaved": summary.get("val_loss_interleaved"),
        **metrics,
        "status": status,
        "seed": spec.seed, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
        "tokens_per_s": summary["tokens_per_s"], "final_train_loss": summary["final_train_loss"],
        "tokens_per_stream": summary["tokens_per_stream"], "data_fingerprint": spec.data_fingerprint,
        # what was in force (trainer.parallel.Applied): world size, checkpointing, compile, chunked CE, ...
        "effective": summary.get("effective"),
        # One entry per evaluated checkpoint: periodic ones, each cooldown branch, and the end.
        "evals": summary["evals"],
    }
    return rec


def _evaluator(spec: RunSpec):
    """Benchmarks of the spec, as a callable the loop runs at every evaluation point (the pairs
    are encoded once, at the first call)."""
    if not spec.benchmarks:
        return None
    from pathlib import Path

    from trainer.data.tokenizer import SpeechVocab
    from trainer.eval.suite import EvalSuite

    suite = []

    def run(model, tokenizer):
        if not suite:
            suite.append(EvalSuite.from_data(Path(spec.data_dir), spec.benchmarks, tokenizer,
                                             SpeechVocab.of(tokenizer), max_items=spec.bench_items))
        return suite[0].run(model)

    return run


def execute(run: RunDir, *, progress: bool = False) -> dict:
    """Train + evaluate ``run``; marks it running, then done (or failed, re-raising the error). ``progress``
    prints a line every few steps (``scaling train``; sweep runners print one line per run instead)."""
    from trainer.loop import train_run
    from trainer.parallel import is_main

    spec = run.spec()
    if not is_main():  # other ranks of a distributed run train; rank 0 records
        return train_run(run, _evaluator(spec), progress=progress)[0]
    run.set_state("running", pid=os.getpid(), host=os.uname().nodename)
    try:
        t0 = time.time()
        summary, _, _ = train_run(run, _evaluator(spec), progress=progress)
        rec = result_record(spec, summary, summary["metrics"])
        rec["wall_seconds"] = round(time.time() - t0, 2)
        run.write_result(rec)
        run.set_state("done")
        return rec
    except BaseException as e:
        run.set_state("failed", error=f"{type(e).__name__}: {e}")
        raise
