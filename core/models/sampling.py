"""Temperature and nucleus (top-p) sampling without sorting the whole vocabulary at every decoding step.

transformers' TopPLogitsWarper sorts all 49,152 logits of every row at every step; on a CPU that sort costs more
than the rest of the sampling step together (the README's Serving section has the figures). The nucleus of a
fine-tuned model is a few dozen tokens, so it is looked for among the likeliest `first` tokens (`torch.topk`), and
the full sort is the fallback for a batch in which some row's nucleus is wider. The tokens kept are transformers'
own: a token stays when the tokens likelier than it hold less than `top_p` of the probability (the likeliest always
stays).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class NucleusSampling(LogitsProcessor):
    """Logits divided by `temperature`, then every token outside the nucleus of mass `top_p` set to -inf."""

    def __init__(self, temperature: float, top_p: float, first: int = 256):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature, self.top_p, self.first = temperature, top_p, first

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_p >= 1.0:
            return scores
        probs = scores.softmax(dim=-1)
        ranked, index = probs.topk(min(self.first, probs.shape[-1]), dim=-1)
        if (ranked.sum(dim=-1) < self.top_p).any():  # some nucleus reaches past the first tokens
            ranked, index = probs.sort(dim=-1, descending=True)
        likelier = ranked.cumsum(dim=-1) - ranked
        keep = likelier < self.top_p
        keep[:, 0] = True
        removed = torch.ones_like(scores, dtype=torch.bool).scatter_(1, index, ~keep)
        return scores.masked_fill(removed, float("-inf"))
