"""Data jobs on a cluster: `scaling data extract|prepare ... --submit slurm --array N`.

A submitit job array of N tasks, task ``i`` running shard ``i/N`` (the same code as ``--shard i/N`` by
hand), then the merge in the submitting process. Tasks are resumable, so submitit's requeue on
preemption or timeout (``checkpoint``) simply runs the same shard again: finished work is skipped.
``executor="local"`` runs the array as local processes (submitit's LocalExecutor; the tests use it).
"""
from __future__ import annotations

from pathlib import Path


def make_executor(folder: Path, kind: str, parallel: int, *, timeout_min: int, name: str, **slurm):
    """A submitit executor logging under ``folder/%j`` (kind "slurm", or "local" processes)."""
    import submitit

    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder / "%j")
        ex.update_parameters(timeout_min=timeout_min)
    else:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        ex.update_parameters(timeout_min=timeout_min, slurm_array_parallelism=parallel, name=name, **slurm)
    return ex


class _Requeueable:
    """A picklable array task; on preemption submitit calls checkpoint() and requeues the same task."""

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class PrepareShard(_Requeueable):
    def __init__(self, out: str, kwargs: dict, shard: tuple[int, int]):
        self.out, self.kwargs, self.shard = out, kwargs, shard

    def __call__(self) -> dict:
        from trainer.data.prepare_real import prepare_real

        return prepare_real(self.out, shard=self.shard, log=print, **self.kwargs)


class ExtractShard(_Requeueable):
    def __init__(self, audio: str, out: str, settings: dict, shard: tuple[int, int] | None):
        self.audio, self.out, self.settings, self.shard = audio, out, settings, shard

    def __call__(self) -> dict:
        return run_extract(self.audio, self.out, self.settings, shard=self.shard)


def run_extract(audio, out, settings: dict, *, shard=None) -> dict:
    """One extraction (or one shard of it) from plain settings: model, kmeans, layer, device, batch_seconds."""
    from trainer.units.extract import dataset_audio, extract_units, is_dataset, list_audio, load_audio, shard_output
    from trainer.units.hubert import HubertExtractor
    from trainer.units.kmeans import KMeansQuantizer

    files, load = dataset_audio(audio) if is_dataset(audio) else (list_audio(audio), load_audio)
    quantizer = KMeansQuantizer.load(settings["kmeans"])
    extractor = HubertExtractor(settings["model"], layer=settings["layer"], device=settings.get("device", "cpu"))
    res = extract_units(files, out, extractor, quantizer, batch_seconds=settings.get("batch_seconds", 120.0), shard=shard,
                        load=load)
    return {**res, "out": str(out if shard is None else shard_output(out, shard))}


def _submit(tasks, out: Path, kind: str, *, timeout_min: int, name: str, echo):
    ex = make_executor(out.parent / f".{out.name}.slurm", kind, len(tasks), timeout_min=timeout_min, name=name)
    jobs = ex.submit_array(tasks)
    echo(f"submitted {len(jobs)} array tasks: {', '.join(str(j.job_id) for j in jobs)} "
         f"(logs in {out.parent / f'.{out.name}.slurm'})")
    return jobs


def launch_prepare(out, kwargs: dict, *, shards: int, executor: str = "slurm", wait: bool = True,
                   timeout_min: int = 24 * 60, echo=print) -> dict:
    """``shards`` array tasks of `data prepare --shard i/N`; with ``wait``, then the merge here."""
    from scaling.errors import ConfigError
    from trainer.data.prepare_real import prepare_real

    if shards < 1:
        raise ConfigError("must be >= 1", field="array", value=shards)
    out = Path(out)
    jobs = _submit([PrepareShard(str(out), kwargs, (i, shards)) for i in range(shards)], out, executor,
                   timeout_min=timeout_min, name=f"prepare-{out.name}", echo=echo)
    if not wait:
        echo(f"when they finish: scaling data prepare ... --out {out} --merge")
        return {"jobs": [j.job_id for j in jobs]}
    results = [j.result() for j in jobs]
    echo(f"{sum(r['items_run'] for r in results)} work items run by {len(jobs)} tasks; merging")
    return {"jobs": [j.job_id for j in jobs], "manifest": prepare_real(out, merge_only=True, **kwargs)}


def launch_extract(audio, out, settings: dict, *, shards: int, executor: str = "slurm", wait: bool = True,
                   timeout_min: int = 24 * 60, echo=print) -> dict:
    """``shards`` array tasks of `data extract --shard i/N`; with ``wait``, then the merge into ``out``."""
    from scaling.errors import ConfigError
    from trainer.units.extract import dataset_audio, is_dataset, list_audio, merge_shards

    if shards < 1:
        raise ConfigError("must be >= 1", field="array", value=shards)
    out = Path(out)
    jobs = _submit([ExtractShard(str(audio), str(out), settings, (i, shards)) for i in range(shards)], out, executor,
                   timeout_min=timeout_min, name=f"extract-{out.name}", echo=echo)
    if not wait:
        echo(f"when they finish: scaling data extract {audio} --out {out} --merge {shards}")
        return {"jobs": [j.job_id for j in jobs]}
    for j in jobs:
        j.result()
    n = merge_shards(dataset_audio(audio)[0] if is_dataset(audio) else list_audio(audio), out, shards)
    echo(f"{n} lines from {shards} shards merged into {out}")
    return {"jobs": [j.job_id for j in jobs], "lines": n}
