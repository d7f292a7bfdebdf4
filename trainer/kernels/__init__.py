"""Training speed-ups: LM heads + cross-entropy that never materialise the full logits (the Python
chunked one, the compiled gradient-in-forward one, Liger's), the model loss through them, variable-length
attention over packed documents, Liger's fused norm/SwiGLU/RoPE, and regional torch.compile."""
from trainer.kernels.chunked_ce import (
    chunked_lm_head_loss,
    fused_lm_head_loss,
    liger_available,
    lm_loss,
    plain_lm_loss,
    regional_compile,
)
from trainer.kernels.fused_ce import compiled_ce_unavailable, compiled_lm_head_loss

__all__ = ["chunked_lm_head_loss", "compiled_ce_unavailable", "compiled_lm_head_loss", "fused_lm_head_loss",
           "liger_available", "lm_loss", "plain_lm_loss", "regional_compile"]
