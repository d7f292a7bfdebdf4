"""The training loop: one run spec in, one run directory out.

- exact token budget: the last step is trimmed so the run consumes exactly ``spec.tokens``;
- schedules: cosine-with-min-lr, or warmup-stable-decay whose cooldown branches (one per budget
  in ``spec.cooldowns``) start from the stable trajectory, decay to their own budget, are
  validated/evaluated and saved under ``cooldowns/<tokens>/``, then the main run goes on;
- gradient accumulation to the global batch; ``train.precision``: ``amp-bf16`` (bf16 autocast on
  GPU, fp32 master weights) or ``bf16`` (bf16 weights and AdamW state);
- one parallel set-up (trainer.parallel.parallelize: activation checkpointing, compile, FSDP2) and
  one loss path (document-aware attention, chunked LM head) for training and validation alike;
  what was in force is returned as ``effective`` (result.json);
- big models start on the meta device: rank 0 alone reads (or builds) the weights and broadcasts
  them into the sharded parameters;
- resumable checkpoints (model, optimizer, data position, RNG): rerunning a killed run resumes
  from the newest intact checkpoint (its files match the sizes and sha256 recorded when it was written;
  a damaged one is set aside with a warning and the next older one used; with none, the run starts over)
  and reproduces the uninterrupted run's losses exactly;
- a non-finite loss or gradient norm stops the run with a clear error before the optimiser steps (a skipped
  step would make the run something other than the recipe it stands for, and the point's tokens would count
  a batch it never learnt from); the state is checked finite before every checkpoint and export, so a
  checkpoint is never written from non-finite state and the last good one stays the one a rerun resumes from;
- the data are checked when the run opens them, before any step: the shards' token ids against the
  tokenizer, the tokenizer's files, and every benchmark item the run will evaluate.
"""
from __future__ import annotations

import math
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from scaling import atomic
from scaling.errors import ConfigError
from scaling.flops import count_params, flops_6nd, flops_per_token_exact
from scaling.initref import InitRef
from scaling.rundir import RunDir, read_record, writing
from scaling.spec import RunSpec, init_std_value
from trainer import checkpoint
from trainer.attention import packed_inputs
from trainer.data.mixture import Mixture
from scaling.datadir import MIX_STREAMS, DataDir
from trainer.data.tokenizer import SpeechVocab, load_tokenizer
from trainer.kernels.chunked_ce import lm_loss
from trainer.mfu import device_peak_flops, mfu
from trainer.autotune import resolve_memory
from trainer.model import (attention_implementation, autocast, build_meta, build_model, count_model_params, extend_vocab,
                           full_state_dict, hf_config, load_config, load_model, master_dtype, quiet_transformers)
from trainer.parallel import (Applied, adamw, all_reduce_sum, barrier, bf16_params_in_force, broadcast_object,
                              close_process_group, ensure_process_group, fsdp_in_force, fullgraph_ok, is_main,
                              load_full_state, materialize, parallelize, plain_state_dict, world)
from trainer.progress import ProgressLine
from trainer.schedule import cooldown_steps, cosine_with_min_lr, warmup_steps, wsd
from trainer.validate import val_loss, val_windows

Evaluator = Callable[[object, object], dict]  # (model, tokenizer) -> {metric: accuracy}
_clock = time.perf_counter  # the step timer (a module attribute, so a test can drive it)


def _peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def val_streams(spec: RunSpec, data: DataDir) -> list[str]:
    """Validation streams: the text LM's own stream, or every speech-LM stream the data folder holds."""
    return ["textlm"] if "textlm" in spec.streams else [s for s in MIX_STREAMS if data.has(s, "val")]


def init_source(spec: RunSpec, run: RunDir) -> str | None:
    """What ``from_pretrained`` loads for the spec's init (None: random)."""
    ref = InitRef.parse(spec.init, source=str(run.spec_path))
    if ref.kind == "run" and RunDir(run.path.parent / ref.value).status != "done":
        raise ConfigError(f"initialisation run {ref.value} has not finished", source=str(run.spec_path), field="init", value=spec.init)
    return ref.source(run.path.parent)


def init_model(spec: RunSpec, run: RunDir, manifest: dict, *, attn: str | None = None):
    """Random init, or TWIST init from a text LM (embedding rows grown once, here), in memory.
    The one-process path; ``init_sharded`` is the same start for several processes."""
    src = init_source(spec, run)
    if src is None:
        model = build_model(spec.shape, spec.seed, init_std=_init_std(spec), attn=attn)
    else:
        model = load_model(src, attn=attn)
        if model.get_input_embeddings().weight.shape[0] != spec.shape.vocab_size:
            extend_vocab(model, spec.shape.vocab_size, real_rows=manifest["text_vocab_size"], init=spec.train.embedding_init,
                         seed=spec.seed)
    _check_params(model, spec)
    return model


def init_sharded(spec: RunSpec, run: RunDir, manifest: dict, device: torch.device, world_size: int, *,
                 train=None, attn: str | None = None):
    """Every rank builds on the meta device in the master dtype and parallelizes (``train``: the run's
    train config with its 'auto' values resolved); rank 0 alone reads the text LM's safetensors (or
    builds the random model) and its tensors are broadcast into the shards. Returns (model, compiled
    blocks). Equal, parameter for parameter, to ``init_model``."""
    src = init_source(spec, run)
    cfg = hf_config(spec.shape, init_std=_init_std(spec)) if src is None else load_config(src)
    cfg.vocab_size = spec.shape.vocab_size
    dtype = master_dtype(spec.train.precision)
    model = build_meta(cfg, dtype=dtype, attn=attn)
    _check_params(model, spec)
    model, compiled = parallelize(model, world_size, train or spec.train, device=device)
    full = None
    if is_main():
        if src is None:
            full = {k: v.to(dtype) for k, v in build_model(spec.shape, spec.seed, init_std=_init_std(spec)).state_dict().items()}
        else:
            full = full_state_dict(src, new_rows=spec.shape.vocab_size, real_rows=manifest["text_vocab_size"],
                                   init=spec.train.embedding_init, seed=spec.seed, dtype=dtype)
    materialize(model, device)
    load_full_state(model, full)
    del full
    return model, compiled


def _init_std(spec: RunSpec) -> float | None:
    return init_std_value(spec.train.init_std, spec.shape.hidden_size)


def _check_params(model, spec: RunSpec) -> None:
    n = count_model_params(model)
    expected = count_params(spec.shape).total
    if n != expected:
        raise ConfigError(f"built model has {n} parameters but the shape accounts for {expected}", field="shape", value=spec.shape.to_dict())


@dataclass
class Progress:
    """Where the main trajectory is; saved in every checkpoint."""

    step: int = 0
    tokens: int = 0
    seq_pos: int = 0
    evals: list = field(default_factory=list)  # periodic evaluations on the main trajectory

    def to_dict(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "seq_pos": self.seq_pos, "evals": self.evals}


class Trainer:
    def __init__(self, run: RunDir, evaluator: Evaluator | None = None, *, progress: bool = False,
                 sink: Callable[[dict], None] | None = None):
        quiet_transformers()
        self.run, self.spec = run, run.spec()
        spec, tc = self.spec, self.spec.train
        self.data_dir = Path(spec.data_dir)
        # every check on the data folder happens here, before a model is built: a truncated shard or a
        # tokenizer from another folder stops the run with a clear error (exit 2), never mid-training
        self.data = DataDir.open(self.data_dir)
        self.manifest = self.data.manifest
        if self.data.fingerprint != spec.data_fingerprint:
            raise ConfigError(f"prepared data in {self.data_dir} (fingerprint {self.data.fingerprint}) differs from the "
                              "data this run was planned on", source=str(run.spec_path), field="data_fingerprint",
                              value=spec.data_fingerprint)
        speech = "textlm" not in spec.streams
        tok_dir = self.data.tokenizer_dir(speech=speech)
        self.tokenizer = load_tokenizer(tok_dir)  # a damaged tokenizer file is named (exit 2), not a JSONDecodeError
        self.data.check_tokenizer(self.tokenizer, speech=speech, source=str(tok_dir))
        if speech:
            SpeechVocab.of(self.tokenizer, source=str(tok_dir))  # the n_units + 2 tokens are there
        if len(self.tokenizer) > spec.shape.vocab_size:
            raise ConfigError(f"the tokenizer has {len(self.tokenizer)} tokens but the model only {spec.shape.vocab_size} rows",
                              source=str(run.spec_path), field="shape.vocab_size", value=spec.shape.vocab_size)
        vals = val_streams(spec, self.data)
        # every token id the run reads lies in the tokenizer (and so in the model's rows): an id beyond it is an
        # error naming the shard and the id here, not an IndexError in the middle of a step
        for split, streams in (("train", spec.streams), ("val", vals)):
            for s in streams:
                self.data.check_token_range(s, split, len(self.tokenizer),
                                            what=f"the {len(self.tokenizer)} tokens of {tok_dir}")
        # every benchmark item the run will evaluate is read, checked and encoded now (the evaluator keeps the
        # encoded suite), so a bad line stops the run before its first step, not after training
        if spec.benchmarks and evaluator is not None:
            check = getattr(evaluator, "check", None)
            if check is not None:
                check(self.tokenizer)
            else:
                from trainer.eval.suite import check_benchmarks

                check_benchmarks(self.data_dir, spec.benchmarks, self.tokenizer, max_items=spec.bench_items)
        train_tokens = {s: self.data.tokens(s, "train") for s in spec.streams}
        val_tokens = {s: self.data.tokens(s, "val") for s in vals}
        self.rank, self.world = world()
        self.device = _device()
        self.fsdp = fsdp_in_force(tc, self.world)
        # FSDP on one process (bf16_params: true) needs a one-process group; whoever creates a group closes it
        ensure_process_group(self.device, single=self.fsdp)
        _seed_everything(spec.seed)
        self.eos = self.tokenizer.eos_token_id
        self.T, self.B = tc.seq_len, tc.batch_size
        attn = attention_implementation(tc.attention, self.device)
        # 'auto' micro-batch and checkpointing: what `scaling memory` fits on this device (trainer.autotune)
        tc = self.tc = resolve_memory(spec.shape, tc, world=self.world, device=self.device, attn=attn)
        self.micro = tc.micro_batch_size or math.ceil(self.B / self.world)
        self.mixture = Mixture(train_tokens, spec.streams, self.T, spec.seed)
        self.val = {s: val_windows(t, self.T, tc.val_sequences) for s, t in val_tokens.items()}
        # the model: built (or read) once, then trainer.parallel.parallelize, the same for every path
        if self.fsdp:
            model, compiled = init_sharded(spec, run, self.manifest, self.device, self.world, train=tc, attn=attn)
        else:
            model = init_model(spec, run, self.manifest, attn=attn)
            model.to(master_dtype(tc.precision))
            model.to(self.device)
            model, compiled = parallelize(model, 1, tc, device=self.device)
        self.model = model
        self.optimizer, opt_name = adamw(model, lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay,
                                         device=self.device)
        self.raw_optimizer = self.optimizer
        self.attn = model.config._attn_implementation
        self.chunked_ce = tc.chunked_ce or tc.liger_ce or tc.compiled_ce  # each is a chunked LM head + CE
        self.liger_ce, self.compiled_ce = tc.liger_ce, tc.compiled_ce
        accumulation = math.ceil(math.ceil(self.B / self.world) / self.micro)
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
        self.effective = Applied(world_size=self.world, activation_checkpointing=tc.activation_checkpointing,
                                 compile=compiled > 0, compiled_layers=compiled, chunked_ce=self.chunked_ce, attention=self.attn,
                                 precision=tc.precision, micro_batch_size=self.micro, accumulation=accumulation,
                                 fsdp=self.fsdp, liger_ce=self.liger_ce, compiled_ce=self.compiled_ce,
                                 bf16_params=bf16_params_in_force(tc, self.device, fsdp=self.fsdp),
                                 master_dtype="+".join(dtypes), fullgraph=compiled > 0 and fullgraph_ok(self.attn),
                                 optimizer=opt_name, liger_kernels=tc.liger_kernels).to_dict()
        # an external text LM: keep the run's exact starting point (grown vocabulary) beside it; the
        # export is collective, so rank 0 decides for all (a shared filesystem may show its folder early)
        if broadcast_object(InitRef.parse(spec.init).external and not (run.path / "init").exists() if is_main() else None):
            self.export(run.path / "init")
        self.evaluator = evaluator
        self.sink = sink  # live mirror of metrics.jsonl (wandb), called on rank 0 after each row is written
        self.steps = spec.steps
        self.params = count_params(spec.shape)
        self.fpt_exact = flops_per_token_exact(spec.shape, self.T)
        self.peak = device_peak_flops(self.device)  # per device; MFU divides by world x this
        self.ckpt_root = run.path / "checkpoints"
        self.ckpt_every = tc.checkpoint_every or max(1, self.steps // 10)
        self.log_every = max(1, self.steps // 50)
        self.progress = ProgressLine(self.steps, spec.tokens, enabled=progress and is_main())
        tps = self.T * self.B
        # cooldown branches: (budget, branch length in steps, main step at which the branch starts)
        self.branches = []
        for c in spec.cooldowns:
            n = -(-c // tps)
            self.branches.append((c, n, n - cooldown_steps(n, tc.cooldown_frac)))
        # warmup: a fraction of the run, or of its shortest budget (the first cooldown branch), so that a
        # branch at a tenth of the run does not spend half its stable phase warming up
        basis = min([self.steps] + [n for _, n, _ in self.branches]) if tc.warmup_basis == "shortest" else self.steps
        self.warm = warmup_steps(basis, tc.warmup_frac)
        self.step_seconds = 0.0  # wall time inside optimiser steps (``_timed_step``)

    # -- schedule -------------------------------------------------------------------------
    def lr_at(self, step: int, total: int) -> float:
        tc = self.spec.train
        if tc.schedule == "cosine":
            return cosine_with_min_lr(step, total, tc.lr, tc.min_lr, self.warm)
        return wsd(step, total, tc.lr, tc.min_lr, self.warm, cooldown_steps(total, tc.cooldown_frac))

    # -- one optimiser step ---------------------------------------------------------------
    def _loss_sum(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """Summed next-token NLL of the rows: one forward, shorter rows padded at the end (causal
        attention keeps padding out of the valid positions, and it is left out of the loss)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.eos, dtype=torch.long, device=self.device)
        valid = torch.zeros(len(rows), width - 1, dtype=torch.bool, device=self.device)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            valid[i, :len(r) - 1] = True
        ids, valid, extra = packed_inputs(ids, valid, self.eos, attn=self.attn, doc_mask=self.tc.doc_mask)
        return lm_loss(self.model, ids, valid, extra, chunked=self.chunked_ce, liger=self.liger_ce, compiled=self.compiled_ce)

    def step(self, p: Progress, total_steps: int, limit: int) -> tuple[float, float, float]:
        lr = self.lr_at(p.step, total_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        left = limit - p.tokens
        n_full = min(self.B, left // self.T)
        rem = 0 if n_full == self.B else left - n_full * self.T
        arr, _ = self.mixture.sequences(p.seq_pos, n_full + (1 if rem else 0))
        rows = [torch.from_numpy(a).to(self.device) for a in arr]
        if rem:
            rows[-1] = rows[-1][:rem]
        rows = [r for r in rows if len(r) > 1]
        n_pred = sum(len(r) - 1 for r in rows)
        # Each rank takes every world-th row; all ranks run the same number of forwards (FSDP's
        # collectives must line up), a rank without rows runs a zero-weight one.
        local = rows[self.rank::self.world]
        n_chunks = math.ceil(math.ceil(len(rows) / self.world) / self.micro)
        total = torch.zeros((), device=self.device)
        for k in range(n_chunks):
            chunk, weight = local[k * self.micro:(k + 1) * self.micro], 1.0
            if not chunk:
                chunk, weight = rows[:1], 0.0
            with autocast(self.device, self.tc.precision):
                s = self._loss_sum(chunk) * weight
            # FSDP averages gradients over ranks, hence x world: the step's loss is sum / n_pred
            (s * (self.world / n_pred)).backward()
            total += s.detach()
        if self.world > 1:
            torch.distributed.all_reduce(total)
        loss_value = (total / n_pred).item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            last = checkpoint.latest(self.ckpt_root, verify=False) if is_main() else None
            raise FloatingPointError(
                f"non-finite loss ({loss_value}) at step {p.step} after {p.tokens} tokens; the run stops here. "
                f"Last good checkpoint: {last if last else 'none yet'} (rerun to resume from it, e.g. with a lower lr)")
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
        if hasattr(gnorm, "full_tensor"):
            gnorm = gnorm.full_tensor()
        gnorm = float(gnorm)  # the same on every rank (the norm of the whole gradient): all stop together
        if not math.isfinite(gnorm):
            # the run stops rather than skipping the step: a skipped step's batch would count in the tokens of a
            # run that never learnt from it, and a run that keeps skipping would still finish as a point
            self.optimizer.zero_grad(set_to_none=True)
            last = checkpoint.latest(self.ckpt_root, verify=False) if is_main() else None
            raise FloatingPointError(
                f"non-finite gradient norm ({gnorm}) at step {p.step} after {p.tokens} tokens (loss {loss_value}); no "
                f"optimiser step was taken and the run stops here. Last good checkpoint: {last if last else 'none yet'} "
                "(rerun to resume from it, e.g. with a lower lr)")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.seq_pos += len(arr)
        p.tokens += n_full * self.T + rem
        p.step += 1
        return lr, loss_value, gnorm

    # -- evaluation -----------------------------------------------------------------------
    def validate(self) -> dict:
        tc = self.tc
        return {f"val_loss_{'text' if s == 'textlm' else s}":
                # always the chunked head: without gradients it is the same loss, never [tokens, vocab] fp32 logits
                val_loss(self.model, w, batch_size=self.micro, eos=self.eos if tc.doc_mask else None, chunked=True,
                         precision=tc.precision)
                for s, w in self.val.items()}

    def evaluate(self, tokens: int, kind: str) -> dict:
        entry = {"kind": kind, "tokens": tokens, "flops": flops_6nd(self.params.total, tokens), **self.validate()}
        if self.evaluator is not None:
            entry.update(self.evaluator(self.model, self.tokenizer))
        self.model.train()
        return entry

    # -- the run --------------------------------------------------------------------------
    def _resume(self) -> Progress:
        # rank 0 chooses (the newest intact checkpoint: a damaged one is set aside with a warning) and
        # broadcasts: ranks on a network filesystem cannot disagree
        skipped = []

        def warn(msg: str) -> None:
            skipped.append(msg)
            print(msg, file=sys.stderr, flush=True)

        ckpt = broadcast_object(checkpoint.latest(self.ckpt_root, warn=warn) if is_main() else None)
        if ckpt is None:
            if is_main():
                if skipped:
                    print(f"warning: no intact checkpoint is left in {self.ckpt_root}; the run starts over from its "
                          "first step", file=sys.stderr, flush=True)
                self.run.metrics_path.unlink(missing_ok=True)
            return Progress()
        st = checkpoint.load(ckpt, self.model, self.raw_optimizer)
        p = Progress(step=st["step"], tokens=st["tokens"], seq_pos=st["seq_pos"], evals=st["evals"])
        done = set(self.cooldown_records())
        keep = [r for r in self.run.metrics() if r.get("at", 0) < p.step or (r.get("at") == p.step and "branch" not in r)
                or (r.get("branch") in done)]
        if is_main():
            atomic.write_jsonl(self.run.metrics_path, keep)
        row = {"event": "resumed", "at": p.step, "tokens": p.tokens, "checkpoint": ckpt.name}
        if skipped:
            row["skipped"] = skipped
        self._log(row)
        return p

    def cooldown_records(self) -> dict[int, dict]:
        out = {}
        root = self.run.path / "cooldowns"
        for c, _, _ in self.branches:
            rec = read_record(root / str(c) / "record.json", what="cooldown record")
            if rec is not None:
                out[c] = rec
        return out

    def check_finite(self, what: str, p: Progress | None = None) -> None:
        """Collective: error unless every parameter and optimiser moment is finite (``what``, e.g. "checkpoint
        step_00000040", was about to be written from them). Counted on each rank's shard and summed."""
        bad = torch.zeros(2, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            for i, tensors in enumerate((self.model.parameters(),
                                         (t for st in self.raw_optimizer.state.values() for t in st.values()
                                          if torch.is_tensor(t)))):
                for t in tensors:
                    t = t.to_local() if hasattr(t, "to_local") else t
                    if t.is_floating_point() and t.numel():
                        bad[i] += (~torch.isfinite(t.detach())).sum().to(bad.device)
        all_reduce_sum(bad)
        n_param, n_opt = (int(x) for x in bad.tolist())
        if n_param or n_opt:
            at = f" at step {p.step} after {p.tokens} tokens" if p is not None else ""
            root = getattr(self, "ckpt_root", None)  # None while __init__ exports the starting point
            last = checkpoint.latest(root, verify=False) if is_main() and root is not None else None
            raise FloatingPointError(
                f"{n_param} non-finite parameter values and {n_opt} non-finite optimiser state values{at}; {what} is not "
                f"written from them and the run stops here. Last good checkpoint: {last if last else 'none yet'} "
                "(rerun to resume from it, e.g. with a lower lr)")

    def _save(self, p: Progress) -> Path:
        self.check_finite(f"checkpoint step_{p.step:08d}", p)  # a checkpoint is never written from non-finite state
        return checkpoint.save(self.ckpt_root, self.model, self.raw_optimizer, p.to_dict())

    def _log(self, row: dict) -> None:
        if is_main():
            self.run.log(row)
            if self.sink is not None:
                self.sink(row)

    def export(self, out: Path) -> None:
        """The HF-format folder (config, safetensors, tokenizer); gathered to rank 0 when sharded. Never written
        from non-finite parameters."""
        self.check_finite(f"the model folder {out}")
        model = self.model
        if self.fsdp or self.tc.activation_checkpointing or self.tc.compile:
            # sharded or wrapped: gather the plain names and tensors, rank 0 writes a plain HF model
            from transformers import AutoModelForCausalLM

            msd = plain_state_dict(model)
            if is_main():
                with torch.device("meta"):
                    plain = AutoModelForCausalLM.from_config(model.config)
                plain.load_state_dict(msd, assign=True, strict=False)
                plain.tie_weights()
                save_pretrained(plain, self.tokenizer, out)
            barrier()
        else:
            save_pretrained(model, self.tokenizer, out)

    def _timed_step(self, p: Progress, total_steps: int, limit: int) -> tuple[float, float, float]:
        """``step``, its wall time added to ``self.step_seconds``: the throughput and MFU logged are those of
        the optimiser steps alone, never of the evaluations, checkpoints or exports between them (``step``
        ends on the loss's host copy, so the device's work is inside the interval)."""
        t = _clock()
        out = self.step(p, total_steps, limit)
        self.step_seconds += _clock() - t
        return out

    def _log_step(self, p: Progress, lr, loss, gnorm, mark: tuple[float, int], branch=None, at=None) -> tuple[float, int]:
        """Log one step's row; ``mark`` = (step seconds, tokens) at the previous row, returned anew."""
        seconds, tokens = mark
        tps = (p.tokens - tokens) / max(self.step_seconds - seconds, 1e-9)  # global: all ranks together
        row = {"step": p.step, "tokens": p.tokens, "flops": flops_6nd(self.params.total, p.tokens), "lr": lr, "loss": loss,
               "grad_norm": gnorm, "tokens_per_s": round(tps, 1), "tokens_per_s_per_device": round(tps / self.world, 1),
               "mfu": mfu(tps, self.fpt_exact, self.world, self.peak),
               "peak_memory_gib": round(_peak_memory_gib(), 3), "at": p.step if at is None else at}
        if branch is not None:
            row["branch"] = branch
        self._log(row)
        return self.step_seconds, p.tokens

    def _cooldown(self, p: Progress, budget: int, n_steps: int) -> None:
        """Run one cooldown branch from the current state, record it, then restore the state."""
        start = p.step
        # the newest checkpoint is the one resumed from (verified) or one written since: no second check
        ckpt = broadcast_object(checkpoint.latest(self.ckpt_root, verify=False) if is_main() else None)
        if ckpt is None or ckpt.name != f"step_{start:08d}":
            ckpt = self._save(p)
        b = Progress(step=p.step, tokens=p.tokens, seq_pos=p.seq_pos)
        mark = self.step_seconds, b.tokens
        while b.step < n_steps:
            lr, loss, gnorm = self._timed_step(b, n_steps, budget)
            mark = self._log_step(b, lr, loss, gnorm, mark, branch=budget, at=start)
        assert b.tokens == budget, (b.tokens, budget)
        entry = self.evaluate(budget, "cooldown")
        out = self.run.path / "cooldowns" / str(budget)
        self.export(out / "model")
        if is_main():
            with writing(out / "record.json"):
                atomic.write_json(out / "record.json", entry)
        self._log({**entry, "branch": budget, "at": start})
        barrier()
        checkpoint.load(ckpt, self.model, self.raw_optimizer)
        self.model.train()

    def train(self) -> dict:
        p = self._resume()
        tc = self.spec.train
        t_start = time.time()
        mark = self.step_seconds, p.tokens
        self.model.train()
        last_loss = float("nan")
        done = set(self.cooldown_records())
        self.progress.start(p.tokens)
        while p.step < self.steps:
            for c, n, s0 in self.branches:
                if s0 == p.step and c not in done:
                    self._cooldown(p, c, n)
                    done.add(c)
                    mark = self.step_seconds, p.tokens
            lr, last_loss, gnorm = self._timed_step(p, self.steps, self.spec.tokens)
            self.progress.update(p.step, p.tokens, last_loss)
            if p.step % self.log_every == 0 or p.step == self.steps:
                mark = self._log_step(p, lr, last_loss, gnorm, mark)
            if tc.eval_every and p.step % tc.eval_every == 0 and p.step < self.steps:
                entry = self.evaluate(p.tokens, "periodic")
                p.evals.append(entry)
                self._log({**entry, "at": p.step})
            if p.step % self.ckpt_every == 0 and p.step < self.steps:
                self._save(p)
        assert p.tokens == self.spec.tokens, (p.tokens, self.spec.tokens)
        train_seconds = time.time() - t_start
        final = self.evaluate(p.tokens, "final")
        self._log({**final, "at": p.step})
        self.export(self.run.model_path)
        if not tc.keep_checkpoints and is_main():
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
        cooldowns = sorted(self.cooldown_records().values(), key=lambda e: e["tokens"])
        return {
            "steps": self.steps, "tokens": p.tokens, "train_seconds": round(train_seconds, 2),
            "tokens_per_s": round(p.tokens / max(train_seconds, 1e-9), 1), "final_train_loss": last_loss,
            "step_seconds": round(self.step_seconds, 2),  # inside optimiser steps (this attempt), evaluations excluded
            "effective": self.effective,
            "tokens_per_stream": self.mixture.tokens_per_stream(),
            "epochs_per_stream": self.mixture.epochs_per_stream(),
            "metrics": {k: v for k, v in final.items() if k not in ("kind", "tokens", "flops") and not k.startswith("val_loss_")},
            **{k: v for k, v in final.items() if k.startswith("val_loss_")},
            "evals": p.evals + cooldowns + [final],
        }


def train_run(run: RunDir, evaluator: Evaluator | None = None, *, progress: bool = False,
              sink=None) -> tuple[dict, object, object]:
    """Train ``run`` to its exact token budget (a progress line every few steps when ``progress``);
    returns (summary, trained model, tokenizer). ``sink(row)`` also receives every metrics row (rank 0).
    A process group the trainer started (torchrun's, or the one-process group of ``bf16_params: true``)
    is closed when the run ends: every rank leaves together after a finished run, at once after an error
    (a rank that raised must not wait in a barrier its peers never reach)."""
    from trainer.parallel import distributed

    had_group = distributed()  # a group made by our caller is theirs to close
    try:
        t = Trainer(run, evaluator, progress=progress, sink=sink)
        summary = t.train()
    except BaseException:
        if not had_group:
            close_process_group(clean=False)
        raise
    if not had_group:
        close_process_group()
    return summary, t.model, t.tokenizer


def _device() -> torch.device:
    if torch.cuda.is_available():
        import os

        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_pretrained(model, tokenizer, out: Path) -> None:
    """save_pretrained + tokenizer into a temporary folder, then rename into place."""
    quiet_transformers()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with writing(tmp):  # a full disk or no permission: an error naming the folder, its partial copy removed
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            atomic.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

