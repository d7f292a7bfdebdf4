"""The trainer's subcommands of `scaling` (train, export, memory; data, eval, generate and bench register from
their packages).
Heavy imports stay inside the command functions."""
from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import ConfigError


def _cmd_train(args) -> int:
    from scaling.atomic import check_out_file

    if args.json:  # before any work: a folder or an unwritable place is refused now, not after the run
        check_out_file(args.json, "--json")
    from scaling import atomic
    from scaling.rundir import RunDir
    from scaling.spec import RunSpec
    from trainer.execute import checked_spec, execute

    target = Path(args.spec)
    if target.is_dir():
        run = RunDir(target)
        run.spec()  # validates
    else:
        spec = RunSpec.load(target)
        if not spec.data_dir:
            raise ConfigError("is required to train a run on its own", source=str(target), field="data_dir")
        out = Path(args.run_dir) if args.run_dir else target.parent / "runs" / spec.run_id
        if RunDir(out).spec_path.is_file() and checked_spec(RunDir(out)).run_id != spec.run_id:
            raise ConfigError(f"already holds another run ({checked_spec(RunDir(out)).run_id}, not {spec.run_id})",
                              source=str(out), field="--run-dir", value=str(out))
        run = RunDir(out).create(spec)
    if args.wandb:  # the run's tracking.json: execute logs live from rank 0 (a rerun resumes the wandb run)
        from scaling.tracking import Tracking, require_wandb

        require_wandb(args.wandb)
        spec = run.spec()
        Tracking(mode=args.wandb, group=spec.sweep, config={"sweep": spec.sweep, "arm": spec.arm, "model": spec.model,
                                                            "budget": spec.budget, "spec": spec.to_dict()}).write(run.path)
    rec = execute(run, force=args.force, echo=print, progress=not args.quiet)
    from trainer.parallel import is_main

    if not is_main():  # rank 0 alone prints and writes files
        return 0
    print(json.dumps({k: rec[k] for k in ("run_id", "tokens", "flops", "val_loss_speech", "val_loss_text") if k in rec}, indent=2))
    if args.json:
        atomic.write_json(args.json, rec)
    return 0


def _cmd_memory(args) -> int:
    from scaling.atomic import check_out_file

    if args.json:  # before any work: a folder or an unwritable place is refused now, not after the run
        check_out_file(args.json, "--json")
    from scaling import atomic
    from scaling.memory import estimate, format_plan, speech_shape

    if args.gpus <= 0 or args.micro_batch <= 0 or args.seq <= 0:
        raise ConfigError("--gpus, --micro-batch and --seq must be positive", field="--gpus/--micro-batch/--seq",
                          value=[args.gpus, args.micro_batch, args.seq])
    if args.accumulation is not None and args.accumulation <= 0:
        raise ConfigError("must be positive", field="--accumulation", value=args.accumulation)
    from scaling.spec import ac_mode

    ac = "none" if args.no_activation_checkpointing else args.activation_checkpointing
    ac = int(ac) if isinstance(ac, str) and ac.isdigit() else ac
    mode, _ = ac_mode(ac, field="--activation-checkpointing")
    if mode == "auto":
        raise ConfigError("is resolved by a run (trainer/autotune.py); estimate none or full here",
                          field="--activation-checkpointing", value=ac)
    plan = estimate(speech_shape(args.model), model=args.model, gpus=args.gpus, micro_batch=args.micro_batch, seq=args.seq,
                    activation_checkpointing=ac, chunked_ce=args.chunked_ce, compiled_ce=args.compiled_ce,
                    precision=args.precision, gpu_memory_gib=args.gpu_memory, attention=args.attention,
                    accumulation=args.accumulation, adamw=args.adamw, fsdp=True if args.bf16_params else None)
    print(format_plan(plan))
    if args.json:
        atomic.write_json(args.json, plan.to_dict())
    return 0 if plan.fits else 1


def _cmd_export(args) -> int:
    from scaling.atomic import check_out_dir

    check_out_dir(args.out, "--out")  # before any work: a file or an unwritable place is refused now
    formats = ("slamkit", "hf")  # trainer.slamkit_ckpt.FORMATS, checked here before torch is imported
    if args.format not in formats:
        raise ConfigError(f"unknown export format; known: {', '.join(formats)}", field="--format", value=args.format)
    from trainer.model import quiet_transformers, resolve_source
    from trainer.slamkit_ckpt import export

    quiet_transformers()
    src = resolve_source(args.checkpoint, field="checkpoint")  # a local folder, or a hub id in the local HF cache
    out = export(src, args.out, args.format, base_model_name=args.base_model)
    print(f"wrote {args.format} model folder {out}")
    return 0


def register(sub) -> None:
    from trainer import bench_cli
    from trainer.data import cli as data_cli
    from trainer.eval import cli as eval_cli
    from trainer.generate import cli as gen_cli

    data_cli.register(sub)
    t = sub.add_parser("train", help="train one run from a run spec (spec.yaml) or a planned run folder")
    t.add_argument("spec", help="RUN.yaml or runs/<run_id>/")
    t.add_argument("--run-dir", help="where to put the run (default: runs/<run_id> beside the spec)")
    t.add_argument("--json", help="also write the result record here")
    t.add_argument("--force", action="store_true", help="train a finished run again, from scratch")
    t.add_argument("--wandb", nargs="?", const="offline", choices=("offline", "online", "disabled"), default=None,
                   help="log live to Weights & Biases from rank 0 (offline unless 'online')")
    t.add_argument("--quiet", action="store_true", help="no progress lines while training")
    t.set_defaults(func=_cmd_train)

    eval_cli.register(sub)
    gen_cli.register(sub)
    bench_cli.register(sub)

    x = sub.add_parser("export", help="write a checkpoint as a SlamKit UnitLM folder or a plain Hugging Face folder")
    x.add_argument("checkpoint", help="a model folder (ours, any HF causal LM, or a SlamKit UnitLM), or a hub id in the "
                                      "local HF cache")
    x.add_argument("--format", required=True, metavar="slamkit|hf",
                   help="slamkit: laid out as SlamKit's UnitLM.save_pretrained (config.json with base_config, 'lm.' "
                        "tensors); hf: a plain save_pretrained folder (a SlamKit UnitLM unwrapped)")
    x.add_argument("--out", required=True, help="output folder (replaced when it exists)")
    x.add_argument("--base-model", default=None,
                   help="slamkit: base_model_name to record (SlamKit loads its config class from it; default: the "
                        "UnitLM's own, else the run's init, else Qwen/Qwen2.5-0.5B or meta-llama/Llama-3.2-1B by family)")
    x.set_defaults(func=_cmd_export)

    m = sub.add_parser("memory", help="estimate per-GPU memory of a training plan before launching it")
    m.add_argument("--model", required=True, help="a published shape, e.g. qwen2.5-7b")
    m.add_argument("--gpus", type=int, default=1, help="GPUs the run is spread over (default 1)")
    m.add_argument("--micro-batch", type=int, default=1, help="sequences per forward pass on each GPU (default 1)")
    m.add_argument("--seq", type=int, default=2048, help="tokens per sequence (default 2048)")
    m.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80, an H100)")
    m.add_argument("--no-activation-checkpointing", action="store_true", help="no recompute (same as --activation-checkpointing none)")
    m.add_argument("--activation-checkpointing", default="full", metavar="MODE",
                   help="full (default: every block), op (selective: matmul and attention outputs kept), none, or an "
                        "integer k (every k-th block); as train.activation_checkpointing")
    m.add_argument("--chunked-ce", action="store_true", help="LM head + cross-entropy in chunks (never the full logits)")
    m.add_argument("--compiled-ce", action="store_true", help="the compiled chunked LM head + CE (train.compiled_ce)")
    m.add_argument("--bf16-params", action="store_true",
                   help="FSDP2 with bf16 compute parameters on one GPU too (train.bf16_params: true; on by default with several)")
    m.add_argument("--adamw", choices=("fused", "foreach", "per-tensor"), default="fused",
                   help="the AdamW implementation (fused: the trainer's on a GPU, with or without FSDP)")
    m.add_argument("--precision", choices=("amp-bf16", "bf16"), default="amp-bf16",
                   help="amp-bf16: fp32 master weights and AdamW state (default); bf16: bf16 weights and state (train.precision)")
    m.add_argument("--attention", choices=("flash", "sdpa"), default="sdpa",
                   help="sdpa (default, the larger figure): SDPA with the explicit document mask, the trainer's path "
                        "without flash-attn (a seq^2 mask and repeated k/v heads per block); flash: FlashAttention-2/flex "
                        "(the `gpu` extra), no mask saved")
    m.add_argument("--accumulation", type=int, default=None,
                   help="micro-batches per optimiser step (default: several, so the gradients are held through the forward)")
    m.add_argument("--json", help="also write the estimate as JSON")
    m.set_defaults(func=_cmd_memory)
