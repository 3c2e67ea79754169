"""Emotion classifier: text -> a distribution over ED's 32 emotions (or DailyDialog's 7).

It serves the emotion-aware discriminator features and reward shaping, the RL-Seq2Seq baseline and the emotion
metrics. Default: the offline pretrained MiniLM encoder, frozen, with a small head trained on ED's
labelled text (each conversation's situation and its speaker turns, all labelled with the conversation's
emotion; core/engine/emotion.py); `encoder.name_or_path=scratch` trains a small transformer end to end instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from core.data import DD_EMOTIONS, ED_EMOTIONS
from core.models.encoder import MINILM, EncoderConfig, EncoderModel, TextEncoder

LABEL_SETS = {"ed32": ED_EMOTIONS, "dd7": DD_EMOTIONS}
LABEL_SOURCE = {"ed32": "empatheticdialogues", "dd7": "dailydialog"}


@dataclass
class EmotionConfig:
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name_or_path=MINILM, freeze=True,
                                                                         max_length=64))
    labels: str = "ed32"  # ed32 | dd7
    head_hidden: int = 256
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.labels not in LABEL_SETS:
            raise ValueError(f"emotion labels {self.labels!r}; expected one of {', '.join(LABEL_SETS)}")


class EmotionClassifier(EncoderModel):
    config_class = EmotionConfig

    def __init__(self, config: EmotionConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.labels = list(LABEL_SETS[config.labels])
        self.encoder = TextEncoder(config.encoder, tokenizer)
        self.memo: dict[str, torch.Tensor] | None = None  # see freeze()
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.encoder.dim, config.head_hidden),
                                  nn.Tanh(), nn.Dropout(config.dropout),
                                  nn.Linear(config.head_hidden, len(self.labels)))

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        return self.head(self.encoder.encode([[t] for t in texts]))

    @torch.no_grad()
    def features(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """Pooled encoder output of each text; batches of similar length, so little padding is computed."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), self.encoder.dim)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self.encoder.encode([[texts[i]] for i in rows]).float().cpu()
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """[len(texts), n_labels] probabilities, on the model's device."""
        if self.memo is None:
            return self._probabilities(texts, batch_size)
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if len(self.memo) + len(new) > self.memo_size:
            self.memo.clear()
            new = list(dict.fromkeys(texts))
        self.memo.update(zip(new, self._probabilities(new, batch_size)))
        return torch.stack([self.memo[t] for t in texts]) if texts else self._probabilities([], batch_size)

    def freeze(self, memo_size: int = 200_000) -> EmotionClassifier:
        """A fixed judge (GAIL's reward and D features): no gradients, and each text's distribution is remembered,
        since the same prompts, histories and replies are read several times per training iteration."""
        self.requires_grad_(False).eval()
        self.memo, self.memo_size = {}, memo_size
        return self

    @torch.no_grad()
    def _probabilities(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, len(self.labels), device=self.encoder.device)
        was_training = self.training
        self.eval()
        probs = torch.softmax(self.head(self.features(texts, batch_size).to(self.encoder.device)), dim=-1)
        self.train(was_training)
        return probs

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(-1).tolist()]


def reply_emotion_prior(prompt_probs: torch.Tensor, reply_probs: torch.Tensor, smoothing: float = 1e-3) -> torch.Tensor:
    """[n_labels, n_labels] row k: the mean emotion distribution of expert replies to prompts of emotion k,
    each pair weighted by how much its prompt is k (soft counts, so no hard classification error creeps in)."""
    counts = prompt_probs.T @ reply_probs + smoothing
    return counts / counts.sum(-1, keepdim=True)


def emotion_fit(reply_probs: torch.Tensor, prompt_probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Cosine similarity in [0, 1] between each reply's emotion distribution and the one experts' replies have
    for that prompt's emotion (`prompt_probs @ prior`)."""
    expected = prompt_probs @ prior
    return torch.cosine_similarity(reply_probs, expected, dim=-1)
