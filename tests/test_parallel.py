"""trainer.parallel.parallelize: torchtitan's order, and options it cannot honour refused up front."""
import dataclasses

import pytest
import torch

from scaling.errors import ConfigError
from scaling.shapes import DEMO
from scaling.spec import TrainConfig
from trainer.model import build_model
from trainer.parallel import parallelize


def test_order_checkpoint_then_compile_then_fully_shard(tmp_path):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FSDPModule

    from trainer.kernels.chunked_ce import is_compiled

    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = build_model(DEMO["toy-xs"], 0)
        tc = TrainConfig(activation_checkpointing=True, compile=True)
        model, compiled = parallelize(model, 1, tc, device=torch.device("cpu"), compile_backend="eager", fsdp=True)
        assert compiled == len(model.model.layers) == 2
        for layer in model.model.layers:
            # the checkpoint wrapper is the block that is compiled and sharded (one FSDP unit per block)
            assert isinstance(layer, CheckpointWrapper) and is_compiled(layer) and isinstance(layer, FSDPModule)
        assert isinstance(model, FSDPModule)  # the root: embeddings, final norm, LM head
    finally:
        torch.distributed.destroy_process_group()


def test_options_that_cannot_be_honoured_are_errors(monkeypatch):
    import shutil

    model = build_model(DEMO["toy-xs"], 0)
    with pytest.raises(ConfigError, match="train.precision"):
        parallelize(model, 1, dataclasses.replace(TrainConfig(), precision="fp8"), device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="train.liger_ce.*CUDA"):  # never a silent fallback to our chunked CE
        parallelize(model, 1, TrainConfig(liger_ce=True), device=torch.device("cpu"))
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no C compiler: inductor cannot run on CPU
    with pytest.raises(ConfigError, match="train.compile"):
        parallelize(model, 1, TrainConfig(compile=True), device=torch.device("cpu"))
    assert not any(hasattr(layer, "_checkpoint_wrapped_module") for layer in model.model.layers)  # nothing half-applied
