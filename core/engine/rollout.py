"""Filling GAIL's buffer: batched rollouts of the generator mixed with human demonstrations, and the
per-token log-probabilities PPO needs (of the current policy and of the frozen reference)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.models.generator import Context, Decoding, context_length, generate, response_logprobs
from core.text import Encoded, collate, encode_batch


@dataclass
class Buffer:
    """One GAIL iteration's samples. Item i answers contexts[i]; its action is `responses[i]` (sampled from the
    generator, or the expert's reply when is_demo[i]), tokenised for the generator in `sequences[i]`."""

    contexts: list[Context] = field(default_factory=list)
    experts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    sequences: list[Encoded] = field(default_factory=list)
    is_demo: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.contexts)

    def generated(self) -> list[int]:
        return [i for i, demo in enumerate(self.is_demo) if not demo]


def fill_buffer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict], n_demos: int,
                sample_batch_size: int, decoding: Decoding) -> Buffer:
    """Rollouts for `rows` (trajectory rows: history, prompt, response), one `generate` call per sample batch;
    the first `n_demos` items of each sample batch carry the expert's reply instead (TextGAIL's mixing), cut
    to the length a sampled reply may have."""
    buffer = Buffer()
    for start in range(0, len(rows), sample_batch_size):
        batch = rows[start:start + sample_batch_size]
        contexts = [(list(r["history"]), r["prompt"]) for r in batch]
        demos = min(n_demos, len(batch))
        sequences = encode_batch(tokenizer, [(h, p, r["response"]) for (h, p), r in zip(contexts[:demos], batch)],
                                 max_length=context_length(model), max_response_tokens=decoding.max_new_tokens + 1)
        responses = [r["response"] for r in batch[:demos]]
        if demos < len(batch):
            sampled = generate(model, tokenizer, contexts[demos:], decoding)
            sequences += sampled.sequences
            responses += sampled.texts
        buffer.contexts += contexts
        buffer.experts += [r["response"] for r in batch]
        buffer.responses += responses
        buffer.sequences += sequences
        buffer.is_demo += [i < demos for i in range(len(batch))]
    return buffer


def batch_logprobs(model: PreTrainedModel, sequences: Sequence[Encoded], pad_id: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of the action tokens and their mask, both [n, width - 1] (right padding)."""
    batch = {k: v.to(device) for k, v in collate(sequences, pad_id).items()}
    return response_logprobs(model, **batch), batch["response_mask"][:, 1:].float()


@torch.no_grad()
def action_logprobs(model: PreTrainedModel, sequences: Sequence[Encoded], pad_id: int, device: torch.device,
                    batch_size: int = 32) -> list[torch.Tensor]:
    """log p of each action's tokens under `model` (no gradient), one 1-D tensor per sequence, so they can be
    laid out again for any minibatch with `scatter_actions`."""
    out = []
    for start in range(0, len(sequences), batch_size):
        logp, mask = batch_logprobs(model, sequences[start:start + batch_size], pad_id, device)
        out += [row[m.bool()].float() for row, m in zip(logp, mask)]
    return out


def scatter_actions(values: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence action values placed on a minibatch's action mask (row-major order matches)."""
    out = torch.zeros_like(mask, dtype=torch.float32)
    out[mask.bool()] = torch.cat(list(values)).to(out.device)
    return out
