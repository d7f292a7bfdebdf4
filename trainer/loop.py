"""The training loop: one run spec in, one run directory out.

- exact token budget: the last step is trimmed so the run consumes exactly ``spec.tokens``;
- schedules: cosine-with-min-lr, or warmup-stable-decay whose cooldown branches (one per budget
  in ``spec.cooldowns``) start from the stable trajectory, decay to their own budget, are
  validated/evaluated and saved under ``cooldowns/<tokens>/``, then the main run goes on;
- gradient accumulation to the global batch, bf16 autocast on GPU with fp32 master weights;
- document-aware attention on packed sequences;
- resumable checkpoints (model, optimizer, data position, RNG): rerunning a killed run resumes
  from the newest complete checkpoint and reproduces the uninterrupted run's losses exactly;
- a non-finite loss stops the run with a clear error; the last good checkpoint stays.
"""
from __future__ import annotations

import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from scaling import atomic
from scaling.errors import ConfigError
from scaling.flops import count_params, flops_6nd, flops_per_token_exact
from scaling.rundir import RunDir
from scaling.spec import RunSpec
from trainer import checkpoint
from trainer.attention import doc_inputs
from trainer.data.mixture import Mixture
from scaling.datadir import MIX_STREAMS, DataDir
from trainer.data.tokenizer import SpeechVocab
from trainer.kernels.chunked_ce import lm_loss, regional_compile
from trainer.model import build_model, count_model_params, extend_vocab, load_model, quiet_transformers
from trainer.progress import ProgressLine
from trainer.parallel import barrier, is_main, shard, world
from trainer.schedule import cooldown_steps, cosine_with_min_lr, warmup_steps, wsd
from trainer.validate import val_loss, val_windows

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense bf16

Evaluator = Callable[[object, object], dict]  # (model, tokenizer) -> {metric: accuracy}


def _peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def val_streams(spec: RunSpec, data: DataDir) -> list[str]:
    """Validation streams: the text LM's own stream, or every speech-LM stream the data folder holds."""
    return ["textlm"] if "textlm" in spec.streams else [s for s in MIX_STREAMS if data.has(s, "val")]


def resolve_init(spec: RunSpec, run: RunDir) -> Path | None:
    if spec.init == "random":
        return None
    if spec.init.startswith("run:"):
        return run.path.parent / spec.init[4:] / "model"
    return Path(spec.init)


def init_model(spec: RunSpec, run: RunDir, manifest: dict):
    """Random init, or TWIST init from a text LM folder (embedding rows grown once, here)."""
    src = resolve_init(spec, run)
    if src is None:
        model = build_model(spec.shape, spec.seed)
    else:
        if spec.init.startswith("run:") and RunDir(src.parent).status != "done":
            raise ConfigError(f"initialisation run {src.parent.name} has not finished", source=str(run.spec_path), field="init", value=spec.init)
        model = load_model(src)
        rows = model.get_input_embeddings().weight.shape[0]
        if rows != spec.shape.vocab_size:
            torch.manual_seed(spec.seed)
            extend_vocab(model, spec.shape.vocab_size, real_rows=manifest["text_vocab_size"], init=spec.train.embedding_init)
            if not spec.init.startswith("run:") and is_main() and not (run.path / "init").exists():
                # an external text LM: keep the run's exact starting point (grown vocabulary) beside it
                save_pretrained(model, DataDir.open(spec.data_dir, verify="none").load_tokenizer(), run.path / "init")
    n = count_model_params(model)
    expected = count_params(spec.shape).total
    if n != expected:
        raise ConfigError(f"built model has {n} parameters but the shape accounts for {expected}", field="shape", value=spec.shape.to_dict())
    return model


def _optimizer(model, spec: RunSpec, fused: bool):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": spec.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.train.lr, betas=(spec.train.beta1, spec.train.beta2), fused=fused)


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
        from accelerate import Accelerator
        from accelerate.utils import set_seed

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
        speech = spec.arm != "textlm"
        self.tokenizer = self.data.load_tokenizer(speech=speech)
        if speech:
            SpeechVocab.of(self.tokenizer, source=str(self.data.tokenizer_dir()))
        if len(self.tokenizer) > spec.shape.vocab_size:
            raise ConfigError(f"the tokenizer has {len(self.tokenizer)} tokens but the model only {spec.shape.vocab_size} rows",
                              source=str(run.spec_path), field="shape.vocab_size", value=spec.shape.vocab_size)
        val_from = val_streams(spec, self.data)
        self.train_tokens = {s: self.data.tokens(s, "train") for s in spec.streams}
        self.val_tokens = {s: self.data.tokens(s, "val") for s in val_from}
        use_cuda = torch.cuda.is_available()
        self.accelerator = Accelerator(cpu=not use_cuda, mixed_precision="bf16" if use_cuda else "no")
        set_seed(spec.seed)
        model = init_model(spec, run, self.manifest)
        self.eos = self.tokenizer.eos_token_id
        self.T, self.B = tc.seq_len, tc.batch_size
        self.micro = tc.micro_batch_size or tc.batch_size
        self.mixture = Mixture(self.train_tokens, spec.streams, self.T, spec.seed)
        self.val = {s: val_windows(t, self.T, tc.val_sequences) for s, t in self.val_tokens.items()}
        self.rank, self.world = world()
        if self.world > 1:  # FSDP2, applied by us (accelerate would wrap the model in DDP on CPU)
            model.to(self.accelerator.device)
            model = shard(model, activation_checkpointing=tc.activation_checkpointing)
            self.model, self.optimizer = model, _optimizer(model, spec, fused=False)
        else:
            if tc.activation_checkpointing:
                model.gradient_checkpointing_enable()
            optimizer = _optimizer(model, spec, fused=use_cuda)
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
            if tc.compile:
                regional_compile(self.accelerator.unwrap_model(self.model))
        self.raw_optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        self.device = self.accelerator.device
        self.flash = getattr(self.accelerator.unwrap_model(self.model).config, "_attn_implementation", "") == "flash_attention_2"
        # calling model.model directly would skip FSDP's root pre-forward hook: chunked CE is single-process
        self.chunked_ce = tc.chunked_ce and self.world == 1
        self.evaluator = evaluator
        self.sink = sink  # live mirror of metrics.jsonl (wandb), called on rank 0 after each row is written
        self.steps = spec.steps
        self.warm = warmup_steps(self.steps, tc.warmup_frac)
        self.params = count_params(spec.shape)
        self.fpt_exact = flops_per_token_exact(spec.shape, self.T)
        self.peak = _peak_flops()
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
        extra = doc_inputs(ids, self.eos, flash=self.flash) if self.spec.train.doc_mask else {}
        return lm_loss(self.model, ids, valid, extra, chunked=self.chunked_ce)

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
            with self.accelerator.autocast():
                s = self._loss_sum(chunk) * weight
            # FSDP averages gradients over ranks, hence x world: the step's loss is sum / n_pred
            self.accelerator.backward(s * (self.world / n_pred))
            total += s.detach()
        if self.world > 1:
            torch.distributed.all_reduce(total)
        loss_value = (total / n_pred).item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            last = checkpoint.latest(self.ckpt_root)
            raise FloatingPointError(
                f"non-finite loss ({loss_value}) at step {p.step} after {p.tokens} tokens; the run stops here. "
                f"Last good checkpoint: {last if last else 'none yet'} (rerun to resume from it, e.g. with a lower lr)")
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
        if hasattr(gnorm, "full_tensor"):
            gnorm = gnorm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.seq_pos += len(arr)
        p.tokens += n_full * self.T + rem
        p.step += 1
        return lr, loss_value, float(gnorm)

    # -- evaluation -----------------------------------------------------------------------
    def validate(self) -> dict:
        return {f"val_loss_{'text' if s == 'textlm' else s}": val_loss(self.model, w) for s, w in self.val.items()}

    def evaluate(self, tokens: int, kind: str) -> dict:
        entry = {"kind": kind, "tokens": tokens, "flops": flops_6nd(self.params.total, tokens), **self.validate()}
        if self.evaluator is not None:
            entry.update(self.evaluator(self.accelerator.unwrap_model(self.model), self.tokenizer))
        self.model.train()
        return entry

    # -- the run --------------------------------------------------------------------------
    def _resume(self) -> Progress:
        ckpt = checkpoint.latest(self.ckpt_root)
        if ckpt is None:
            if is_main():
                self.run.metrics_path.unlink(missing_ok=True)
            return Progress()
        st = checkpoint.load(ckpt, self.accelerator.unwrap_model(self.model), self.raw_optimizer)
        p = Progress(step=st["step"], tokens=st["tokens"], seq_pos=st["seq_pos"], evals=st["evals"])
        done = set(self.cooldown_records())
        keep = [r for r in self.run.metrics() if r.get("at", 0) < p.step or (r.get("at") == p.step and "branch" not in r)
                or (r.get("branch") in done)]
        if is_main():
            atomic.write_jsonl(self.run.metrics_path, keep)
        self._log({"event": "resumed", "at": p.step, "tokens": p.tokens, "checkpoint": ckpt.name})
        return p

    def cooldown_records(self) -> dict[int, dict]:
        out = {}
        root = self.run.path / "cooldowns"
        for c, _, _ in self.branches:
            f = root / str(c) / "record.json"
            if f.is_file():
                import json

                out[c] = json.loads(f.read_text())
        return out

    def _save(self, p: Progress) -> Path:
        return checkpoint.save(self.ckpt_root, self.accelerator.unwrap_model(self.model), self.raw_optimizer, p.to_dict())

    def _log(self, row: dict) -> None:
        if is_main():
            self.run.log(row)
            if self.sink is not None:
                self.sink(row)

    def export(self, out: Path) -> None:
        """The HF-format folder (config, safetensors, tokenizer); gathered to rank 0 when sharded."""
        model = self.accelerator.unwrap_model(self.model)
        if self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
            from transformers import AutoModelForCausalLM

            msd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if is_main():
                plain = AutoModelForCausalLM.from_config(model.config)
                plain.load_state_dict(msd)
                save_pretrained(plain, self.tokenizer, out)
            barrier()
        else:
            save_pretrained(model, self.tokenizer, out)

    def _log_step(self, p: Progress, lr, loss, gnorm, t_last, tok_last, branch=None, at=None) -> tuple[float, int]:
        now = time.time()
        tps = (p.tokens - tok_last) / max(now - t_last, 1e-9)
        row = {"step": p.step, "tokens": p.tokens, "flops": flops_6nd(self.params.total, p.tokens), "lr": lr, "loss": loss,
               "grad_norm": gnorm, "tokens_per_s": round(tps, 1), "mfu": (tps * self.fpt_exact / self.peak) if self.peak else None,
               "peak_memory_gib": round(_peak_memory_gib(), 3), "at": p.step if at is None else at}
        if branch is not None:
            row["branch"] = branch
        self._log(row)
        return now, p.tokens

    def _cooldown(self, p: Progress, budget: int, n_steps: int) -> None:
        """Run one cooldown branch from the current state, record it, then restore the state."""
        start = p.step
        ckpt = checkpoint.latest(self.ckpt_root)
        if ckpt is None or ckpt.name != f"step_{start:08d}":
            ckpt = self._save(p)
        b = Progress(step=p.step, tokens=p.tokens, seq_pos=p.seq_pos)
        t_last, tok_last = time.time(), b.tokens
        while b.step < n_steps:
            lr, loss, gnorm = self.step(b, n_steps, budget)
            t_last, tok_last = self._log_step(b, lr, loss, gnorm, t_last, tok_last, branch=budget, at=start)
        assert b.tokens == budget, (b.tokens, budget)
        entry = self.evaluate(budget, "cooldown")
        out = self.run.path / "cooldowns" / str(budget)
        self.export(out / "model")
        if is_main():
            atomic.write_json(out / "record.json", entry)
        self._log({**entry, "branch": budget, "at": start})
        barrier()
        checkpoint.load(ckpt, self.accelerator.unwrap_model(self.model), self.raw_optimizer)
        self.model.train()

    def train(self) -> dict:
        p = self._resume()
        tc = self.spec.train
        t_start = time.time()
        t_last, tok_last = t_start, p.tokens
        self.model.train()
        last_loss = float("nan")
        self.progress.start(p.tokens)
        done = set(self.cooldown_records())
        while p.step < self.steps:
            for c, n, s0 in self.branches:
                if s0 == p.step and c not in done:
                    self._cooldown(p, c, n)
                    done.add(c)
                    t_last, tok_last = time.time(), p.tokens
            lr, last_loss, gnorm = self.step(p, self.steps, self.spec.tokens)
            self.progress.update(p.step, p.tokens, last_loss)
            if p.step % self.log_every == 0 or p.step == self.steps:
                t_last, tok_last = self._log_step(p, lr, last_loss, gnorm, t_last, tok_last)
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
            "tokens_per_stream": self.mixture.tokens_per_stream(),
            "metrics": {k: v for k, v in final.items() if k not in ("kind", "tokens", "flops") and not k.startswith("val_loss_")},
            **{k: v for k, v in final.items() if k.startswith("val_loss_")},
            "evals": p.evals + cooldowns + [final],
        }


def train_run(run: RunDir, evaluator: Evaluator | None = None, *, progress: bool = False,
              sink=None) -> tuple[dict, object, object]:
    """Train ``run`` to its exact token budget (a progress line every few steps when ``progress``);
    returns (summary, trained model, tokenizer). ``sink(row)`` also receives every metrics row (rank 0)."""
    t = Trainer(run, evaluator, progress=progress, sink=sink)
    summary = t.train()
    return summary, t.accelerator.unwrap_model(t.model), t.tokenizer


def save_pretrained(model, tokenizer, out: Path) -> None:
    """save_pretrained + tokenizer into a temporary folder, then rename into place."""
    quiet_transformers()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    atomic.replace_dir(tmp, out)

