"""Training speed-ups (issue 8): a chunked LM head + cross-entropy that never materialises the
full logits, the model loss through it, and regional torch.compile of the decoder blocks."""
from trainer.kernels.chunked_ce import (
    chunked_lm_head_loss,
    fused_lm_head_loss,
    liger_available,
    lm_loss,
    plain_lm_loss,
    regional_compile,
)

__all__ = ["chunked_lm_head_loss", "fused_lm_head_loss", "liger_available", "lm_loss", "plain_lm_loss", "regional_compile"]
