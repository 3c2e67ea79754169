"""What the trainers of a generator share: the loss on the tokens a batch marks, perplexity, AdamW's groups."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from accelerate import Accelerator
from transformers import PreTrainedModel

from core.engine.runtime import shard
from core.models.generator import response_logprobs
from core.text import Encoded, collate


def lm_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens that `response_mask` marks (all of a pretraining block).
    `response_logprobs` runs the LM head only from the first reply token on: with a 49k vocabulary that head
    costs as much as several transformer blocks."""
    logp = response_logprobs(model, **batch)
    return -logp.sum() / batch["response_mask"][:, 1:].sum().clamp(min=1)


@torch.no_grad()
def perplexity(model: PreTrainedModel, examples: Sequence[Encoded], batch_size: int, pad_id: int,
               accelerator: Accelerator) -> float:
    """exp(mean negative log-likelihood per loss token) over `examples`, split across processes."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=accelerator.device)
    mine = shard(examples, accelerator)
    for start in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in collate(mine[start:start + batch_size], pad_id).items()}
        with accelerator.autocast():
            logp = response_logprobs(model, **batch)
        totals += torch.stack([-logp.sum(), batch["response_mask"][:, 1:].sum().float()])
    model.train(was_training)
    nll, count = accelerator.reduce(totals, reduction="sum").tolist()
    return math.exp(nll / count) if count else float("nan")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # As in nanoGPT and GPT-2: matrices and embeddings decay; biases and layer-norm gains do not.
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
