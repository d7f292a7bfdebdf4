"""Run under ``torch.distributed.run --nproc_per_node 2`` (gloo, CPU) by tests/test_distributed.py:
several scale-path checks in one launch. Rank 0 writes ``result.json`` (and per-item CSVs) into the
output folder named in the config; the test compares them with one process.

    python -m torch.distributed.run --nproc_per_node 2 tests/helpers/dist_checks.py config.json
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(cfg_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    out = Path(cfg["out"])
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    from scaling.rundir import RunDir
    from scaling.spec import RunSpec, TrainConfig
    from scaling.shapes import shape_from_hf_config
    from trainer.loop import init_sharded
    from trainer.parallel import is_main, parallelize, plain_state_dict
    from trainer.validate import val_loss

    res = {}
    # 1. meta-device init + rank-0 safetensors + broadcast into FSDP shards
    hf = json.loads((Path(cfg["text_lm"]) / "config.json").read_text())
    shape = shape_from_hf_config(hf).with_vocab(cfg["speech_vocab"])
    train = TrainConfig(seq_len=64, batch_size=4, embedding_init=cfg["embedding_init"])
    spec = RunSpec(arm="interleaved", model="toy-xs", shape=shape, tokens=4096, streams={"speech": 1.0},
                   init=cfg["text_lm"], data_fingerprint="x", train=train, seed=3)
    run = RunDir(out / "runs" / "r")
    model, _ = init_sharded(spec, run, {"text_vocab_size": cfg["text_vocab"]}, torch.device("cpu"), 2)
    sd = plain_state_dict(model)
    if is_main():
        torch.save(sd, out / "meta_init.pt")

    # 2. validation: packed windows under FSDP, by the training loss path
    windows = np.load(cfg["windows"])
    res["val_loss_fsdp"] = val_loss(model, windows, batch_size=2, eos=cfg["eos"], chunked=True)
    res["val_loss_fsdp_plain_head"] = val_loss(model, windows, batch_size=3, eos=cfg["eos"], chunked=False)

    # 3. evaluation sharded over the ranks: per-item files
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite

    tok = load_tokenizer(cfg["tokenizer"])
    suite = EvalSuite.from_data(cfg["benchmarks"], cfg["bench_names"], tok, SpeechVocab.of(tok), batch_size=3)
    results = suite.run_detailed(model, n_resamples=100, seed=0)
    if is_main():
        for name, r in results.items():
            r.write_csv(out / "per_item" / f"{name}.csv")

    # 4. activation checkpointing + per-block compile + FSDP: per-step losses of a few AdamW steps
    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.model import build_model

    toy = build_model(shape, seed=7)
    tc = dataclasses.replace(train, activation_checkpointing=True, compile=True, chunked_ce=True)
    toy, compiled = parallelize(toy, 2, tc, device=torch.device("cpu"), compile_backend="aot_eager")
    opt = torch.optim.AdamW(toy.parameters(), lr=1e-3)
    batches = torch.from_numpy(np.load(cfg["train_batches"]))  # [steps, rows, T]
    rank = torch.distributed.get_rank()
    losses = []
    for b in batches:
        ids = b[rank::2]
        valid = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
        ids, valid, extra = packed_inputs(ids, valid, cfg["eos"], attn=toy.config._attn_implementation)
        n_pred = (b.shape[1] - 1) * b.shape[0]
        s = lm_loss(toy, ids, valid, extra, chunked=True)
        (s * 2 / n_pred).backward()  # FSDP averages gradients over the 2 ranks
        opt.step()
        opt.zero_grad(set_to_none=True)
        total = s.detach().clone()
        torch.distributed.all_reduce(total)
        losses.append(float(total / n_pred))
    res["compile_ckpt_fsdp_losses"] = losses
    res["compiled_layers"] = compiled
    if is_main():
        (out / "result.json").write_text(json.dumps(res))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
