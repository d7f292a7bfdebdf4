"""The training loop: one run spec in, one run directory out.

Exact token budget (the last step is trimmed so the run consumes exactly ``spec.tokens``),
cosine-with-min-lr schedule with warmup, gradient clipping, periodic validation per stream,
JSON-lines metrics, and a final ``save_pretrained`` checkpoint with its tokenizer.
"""
from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scaling import atomic
from scaling.errors import ConfigError
from scaling.flops import count_params, flops_per_token_exact
from scaling.rundir import RunDir
from scaling.spec import RunSpec
from trainer.data.prepare import load_manifest
from trainer.data.shards import load_shard
from trainer.data.mixture import Mixture
from trainer.data.tokenizer import load_tokenizer
from trainer.model import build_model, count_model_params, extend_vocab, load_model
from trainer.schedule import cosine_with_min_lr, warmup_steps
from trainer.validate import val_loss, val_windows

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense bf16


def _peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def val_streams(spec: RunSpec) -> list[str]:
    return ["textlm"] if spec.arm == "textlm" else ["speech", "text", "interleaved"]


def resolve_init(spec: RunSpec, run: RunDir) -> Path | None:
    if spec.init == "random":
        return None
    if spec.init.startswith("run:"):
        return run.path.parent / spec.init[4:] / "model"
    return Path(spec.init)


def init_model(spec: RunSpec, run: RunDir, manifest: dict):
    src = resolve_init(spec, run)
    if src is None:
        model = build_model(spec.shape, spec.seed)
    else:
        if src.parent.joinpath("state.json").exists() and RunDir(src.parent).status != "done":
            raise ConfigError(f"initialisation run {src.parent.name} has not finished", source=str(run.spec_path), field="init", value=spec.init)
        model = load_model(src)
        rows = model.get_input_embeddings().weight.shape[0]
        if rows != spec.shape.vocab_size:
            torch.manual_seed(spec.seed)
            extend_vocab(model, spec.shape.vocab_size, real_rows=manifest["text_vocab_size"])
    n = count_model_params(model)
    expected = count_params(spec.shape).total
    if n != expected:
        raise ConfigError(f"built model has {n} parameters but the shape accounts for {expected}", field="shape", value=spec.shape.to_dict())
    return model


def _optimizer(model, spec: RunSpec):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": spec.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available()
    return torch.optim.AdamW(groups, lr=spec.train.lr, betas=(spec.train.beta1, spec.train.beta2), fused=fused)


def _loss_sum(model, rows: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over rows (rows of equal length are batched together)."""
    total, count = 0.0, 0
    by_len: dict[int, list[torch.Tensor]] = {}
    for r in rows:
        by_len.setdefault(len(r), []).append(r)
    for _, group in sorted(by_len.items()):
        ids = torch.stack(group)
        logits = model(input_ids=ids).logits
        total = total + F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1), reduction="sum")
        count += ids[:, 1:].numel()
    return total, count


def train_run(run: RunDir):
    """Train ``run`` to its exact token budget; returns (summary, trained model, tokenizer)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    spec = run.spec()
    data_dir = Path(spec.data_dir)
    manifest = load_manifest(data_dir)
    if manifest["fingerprint"] != spec.data_fingerprint:
        raise ConfigError("prepared data differs from the data this run was planned on",
                          source=str(run.spec_path), field="data_fingerprint", value=manifest["fingerprint"])
    use_cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not use_cuda, mixed_precision="bf16" if use_cuda else "no")
    set_seed(spec.seed)
    model = init_model(spec, run, manifest)
    tok_dir = data_dir / ("tokenizer_text" if spec.arm == "textlm" else "tokenizer")
    tokenizer = load_tokenizer(tok_dir)

    tc = spec.train
    T, B = tc.seq_len, tc.batch_size
    shard_dir = data_dir / "shards"
    mixture = Mixture({s: load_shard(shard_dir, f"{s}_train") for s in spec.streams}, spec.streams, T, spec.seed)
    val = {s: val_windows(load_shard(shard_dir, f"{s}_val"), T, tc.val_sequences) for s in val_streams(spec)}

    optimizer = _optimizer(model, spec)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    steps = spec.steps
    warm = warmup_steps(steps, tc.warmup_frac)
    params = count_params(spec.shape)
    fpt_exact = flops_per_token_exact(spec.shape, T)
    peak = _peak_flops()
    log_every = max(1, steps // 50)

    def validate() -> dict:
        return {f"val_loss_{'text' if s == 'textlm' else s}": val_loss(model, w) for s, w in val.items()}

    run.metrics_path.unlink(missing_ok=True)  # a restarted run starts its log afresh
    consumed, seq_pos = 0, 0
    t_start = time.time()
    t_last, tok_last = t_start, 0
    model.train()
    last_loss = float("nan")
    for step in range(steps):
        lr = cosine_with_min_lr(step, steps, tc.lr, tc.min_lr, warm)
        for g in optimizer.param_groups:
            g["lr"] = lr
        left = spec.tokens - consumed
        n_full = min(B, left // T)
        rem = 0 if n_full == B else left - n_full * T
        arr, _ = mixture.sequences(seq_pos, n_full + (1 if rem else 0))
        seq_pos += len(arr)
        rows = [torch.from_numpy(a).to(device) for a in arr]
        if rem:
            rows[-1] = rows[-1][:rem]
        with accelerator.autocast():
            total, count = _loss_sum(model, [r for r in rows if len(r) > 1])
        loss = total / count
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step} ({consumed} tokens)")
        accelerator.backward(loss)
        gnorm = accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        consumed += n_full * T + rem
        last_loss = loss.item()
        is_last = step == steps - 1
        if (step + 1) % log_every == 0 or is_last:
            now = time.time()
            tps = (consumed - tok_last) / max(now - t_last, 1e-9)
            t_last, tok_last = now, consumed
            row = {"step": step + 1, "tokens": consumed, "flops": 6.0 * params.total * consumed, "lr": lr,
                   "loss": last_loss, "grad_norm": float(gnorm), "tokens_per_s": round(tps, 1),
                   "mfu": (tps * fpt_exact / peak) if peak else None, "peak_memory_gib": round(_peak_memory_gib(), 3)}
            if tc.eval_every and (step + 1) % tc.eval_every == 0 and not is_last:
                row.update(validate())
            run.log(row)
    assert consumed == spec.tokens, (consumed, spec.tokens)
    train_seconds = time.time() - t_start
    losses = validate()
    run.log({"step": steps, "tokens": consumed, "flops": 6.0 * params.total * consumed, **losses})

    model = accelerator.unwrap_model(model)
    save_checkpoint(model, tokenizer, run.model_path)
    summary = {
        "steps": steps, "tokens": consumed, "train_seconds": round(train_seconds, 2),
        "tokens_per_s": round(consumed / max(train_seconds, 1e-9), 1), "final_train_loss": last_loss,
        "tokens_per_stream": mixture.tokens_per_stream(), **losses,
    }
    return summary, model, tokenizer


def save_checkpoint(model, tokenizer, out: Path) -> None:
    """save_pretrained + tokenizer into a temporary folder, then rename into place."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    from trainer.model import quiet_transformers

    quiet_transformers()
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    atomic.replace_dir(tmp, out)
