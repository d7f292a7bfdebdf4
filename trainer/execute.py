"""Execute one planned run: train, evaluate the final checkpoint, write the result record.

Safe to call on any run folder, by any launcher: the spec must still match the run id it was
planned under (an edited spec.yaml is refused, not resumed from the old checkpoint), a finished
run is not trained again unless ``force``, and rank 0 holds the folder's ``train.lock`` (an
exclusive ``flock``, released by the kernel if the process dies) while it trains, so a second
process on the same run is refused at once.

A run the machine stops (a full disk or quota, a read-only file system, no permission:
``scaling.rundir.RESOURCE_ERRNOS``) is marked failed at once with the file and the reason and
``resource_error: true`` in state.json, its attempt not counted there, and the error raised is a
:class:`scaling.rundir.ResourceError` (a ConfigError: ``error: <file>: <reason>``, exit status 2).
"""
from __future__ import annotations

import contextlib
import os
import re
import time


from scaling import yamlio
from scaling.errors import ConfigError, Stopped
from scaling.flops import count_params, flops_6nd, flops_exact
from scaling.rundir import ResourceError, RunDir, as_resource_error
from scaling.spec import RunSpec

LOCK_FILE = "train.lock"
_RUN_ID_TAIL = re.compile(r"-[0-9a-f]{10}$")


def init_compute(spec: RunSpec, run: RunDir) -> dict | None:
    """The compute of the run this run starts from (its text LM: tokens, 6ND), stated in the result and
    not counted in its budget (as in SIMS); None for a random init or an init from outside the sweep."""
    from scaling.initref import InitRef

    ref = InitRef.parse(spec.init)
    if ref.kind != "run":
        return None
    rec = RunDir(run.path.parent / ref.value).result() or {}
    if rec.get("tokens") is None:
        return None
    return {"run_id": ref.value, "tokens": rec["tokens"], "flops": rec.get("flops"), "counted_in_budget": False}


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
        # the most passes over any one training stream: how much the run repeats its data
        "epochs": max(summary["epochs_per_stream"].values()) if summary.get("epochs_per_stream") else None,
        "status": status,
        "seed": spec.seed, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
        "tokens_per_s": summary["tokens_per_s"], "final_train_loss": summary["final_train_loss"],
        "tokens_per_stream": summary["tokens_per_stream"], "data_fingerprint": spec.data_fingerprint,
        "epochs_per_stream": summary.get("epochs_per_stream"),
        # what was in force (trainer.parallel.Applied): world size, checkpointing, compile, chunked CE, ...
        "effective": summary.get("effective"),
        # One entry per evaluated checkpoint: periodic ones, each cooldown branch, and the end.
        "evals": [_with_budget(e, spec) for e in summary["evals"]],
    }
    return rec


def _with_budget(entry: dict, spec: RunSpec) -> dict:
    """A cooldown branch's eval entry with the nominal budget C it was planned for (the results
    table groups points by budget; 6ND of the branch's whole sequences is only close to it)."""
    if entry.get("kind") != "cooldown" or not spec.cooldown_budgets:
        return entry
    by_tokens = dict(zip(spec.cooldowns, spec.cooldown_budgets))
    return {**entry, "budget": by_tokens[entry["tokens"]]} if entry.get("tokens") in by_tokens else entry


class _Benchmarks:
    """The spec's benchmarks as the evaluator the loop runs at every evaluation point. ``check(tokenizer)``
    (the Trainer calls it when it opens the data, before any step) reads, checks and encodes every item
    once (``trainer.eval.suite.check_benchmarks``): a bad line stops the run before it trains, and the
    encoded suite is what every evaluation then uses."""

    def __init__(self, spec: RunSpec):
        self.spec, self.suite = spec, None

    def check(self, tokenizer) -> None:
        if self.suite is None:
            from pathlib import Path

            from trainer.eval.suite import check_benchmarks

            self.suite = check_benchmarks(Path(self.spec.data_dir), self.spec.benchmarks, tokenizer,
                                          max_items=self.spec.bench_items)

    def __call__(self, model, tokenizer) -> dict:
        self.check(tokenizer)
        return self.suite.run(model)


def _evaluator(spec: RunSpec):
    """Benchmarks of the spec, as a callable the loop runs at every evaluation point (None without any)."""
    return _Benchmarks(spec) if spec.benchmarks else None


def checked_spec(run: RunDir) -> RunSpec:
    """The run's spec, refused when its content no longer gives the run id it was planned under
    (the id recorded in spec.yaml, and the folder's name when it is a planned run folder)."""
    spec = run.spec()
    raw = yamlio.load(run.spec_path)
    recorded = raw.get("run_id") if isinstance(raw, dict) else None
    for what, rid in (("the run_id recorded in spec.yaml", recorded),
                      ("the run folder's name", run.path.name if _RUN_ID_TAIL.search(run.path.name) else None)):
        if rid is not None and rid != spec.run_id:
            raise ConfigError(f"the spec now gives run id {spec.run_id}, not {what} ({rid}): it was edited after the "
                              "run was planned. Plan it as a new run (its own folder) instead of reusing this one",
                              source=str(run.spec_path), field="run_id", value=rid)
    return spec


def is_finished(run: RunDir) -> bool:
    return run.status == "done" and run.result() is not None


@contextlib.contextmanager
def run_lock(run: RunDir):
    """Hold the run folder's lock while training (one process per run); refuse if another holds it."""
    import fcntl

    run.path.mkdir(parents=True, exist_ok=True)
    path = run.path / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
            raise ConfigError(f"is being trained by {holder}; wait for it to finish (or stop it) before training it "
                              "again", source=str(run.path), field=LOCK_FILE, value=holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def execute(run: RunDir, *, force: bool = False, echo=None, progress: bool = False) -> dict:
    """Train + evaluate ``run``; marks it running, then done (or failed, re-raising the error).
    A finished run returns its record untouched unless ``force``. ``progress`` prints a line every
    few steps (``scaling train``; sweep runners print one line per run instead). A text LM is copied
    from the user cache when a verified entry of its run id is there, and stored there once trained
    (``trainer.runcache``)."""
    from trainer import runcache
    from trainer.loop import train_run
    from trainer.parallel import is_main

    spec = checked_spec(run)
    if not force and is_finished(run):  # every rank sees the same files: all return together
        if echo is not None:
            echo(f"run {spec.run_id} is already done ({run.result_path}); nothing to train (--force trains it again)")
        return run.result()
    say = echo or print
    cached = runcache.usable(spec, echo=say if is_main() else None) if runcache.cacheable(spec) and not force else None
    if cached is not None:  # every rank sees the same cache: rank 0 copies it, all return without training
        if not is_main():
            return runcache.cached_result(cached)
        with run_lock(run):
            try:
                rec = runcache.restore(run, cached, echo=say)
            except OSError as e:  # the entry changed under us (replaced by another writer): train instead
                say(f"text LM {spec.run_id} could not be copied from the cache ({e}); training it")
                rec = None
            if rec is not None:
                run.set_state("done", cached_from=str(cached))
                return rec
    if not is_main():  # other ranks of a distributed run train; rank 0 records
        return train_run(run, _evaluator(spec), progress=progress)[0]
    with run_lock(run):
        if not force and is_finished(run):  # finished while we waited for the lock
            return run.result()
        if force:  # from scratch: no old result, checkpoint or cooldown branch is reused
            import shutil

            run.result_path.unlink(missing_ok=True)
            for d in ("checkpoints", "cooldowns"):
                shutil.rmtree(run.path / d, ignore_errors=True)
        run.set_state("running", pid=os.getpid(), host=os.uname().nodename)
        tracker = None
        try:
            from scaling.tracking import tracker_for

            tracker = tracker_for(run)
            t0 = time.time()
            summary, _, _ = train_run(run, _evaluator(spec), progress=progress, sink=tracker)
            rec = result_record(spec, summary, summary["metrics"])
            rec["wall_seconds"] = round(time.time() - t0, 2)
            init = init_compute(spec, run)
            if init is not None:
                rec["init_compute"] = init
            run.write_result(rec)
            run.set_state("done")
            if runcache.cacheable(spec):
                try:
                    runcache.store(run, spec, echo=say)
                except OSError as e:  # the run is done; only later sweeps miss the cache
                    say(f"text LM {spec.run_id} not stored in the cache: {e}")
            if tracker is not None:
                tracker.finish(rec)
            return rec
        except (KeyboardInterrupt, Stopped) as e:  # stopped, not failed: the run resumes from its last checkpoint
            run.set_state("pending", interrupted=f"{type(e).__name__}: {e}")
            if tracker is not None:
                tracker.finish(exit_code=1)
            raise
        except BaseException as e:
            res = as_resource_error(e, run.path)
            if res is not None:  # the machine, not the run: failed at once, with the file and the reason
                raise _resource_failure(run, res, tracker) from e
            run.set_state("failed", error=f"{type(e).__name__}: {e}")
            if tracker is not None:
                tracker.finish(exit_code=1)
            raise


def _resource_failure(run: RunDir, err: ResourceError, tracker=None) -> ResourceError:
    """Mark ``run`` failed because of ``err`` (a full disk, no permission, ...): state.json gets the reason and
    ``resource_error: true`` and the attempt is not counted; returns the error to raise, saying so (or that
    even state.json could not be written)."""
    not_written = run.mark_resource_failure(err)
    if tracker is not None:
        try:
            tracker.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - the tracker may need the same disk; the run's error is what matters
            pass
    if not_written is None:
        return err.noted(f"the run is marked failed in {run.state_path} (resource_error: true; the attempt does not "
                         "count against --max-attempts); free space or fix the permissions and rerun: it resumes from "
                         "its last checkpoint")
    return err.noted(f"{run.state_path} could not record it either ({not_written}); free space or fix the permissions "
                     "and rerun: it resumes from its last checkpoint")
