"""RL-Seq2Seq's reward (docs/baselines.md): emotion fit to the class the reply was conditioned on, plus the word
overlap with the expert's reply."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.models.emotion import EmotionClassifier, emotion_fit

REWARD = ("w_emo * cos(emotion(reply), prior[class]) + w_sim * unigram_F1(reply, expert reply); prior[k] = mean "
          "emotion distribution of the training split's expert replies, each weighted by its context's probability "
          "of emotion k; class = the emotion model's most likely class of the context")
REWARD_WITHOUT_EMOTION = "w_sim * unigram_F1(reply, expert reply) (no emotion model: the emotion term is dropped)"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def unigram_f1(hypothesis: str, reference: str) -> float:
    """F1 of the word overlap (clipped counts), as ParlAI's F1: cheap, offline, 0 for an empty reply."""
    hyp, ref = Counter(words(hypothesis)), Counter(words(reference))
    overlap = sum((hyp & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


@dataclass
class RewardTerms:
    total: torch.Tensor  # [batch]
    emotion_fit: torch.Tensor
    similarity: torch.Tensor


class Seq2SeqReward:
    """reward = w_emo * emotion_fit + w_sim * unigram F1; without an emotion model, w_sim * unigram F1 alone."""

    def __init__(self, w_emo: float, w_sim: float, emotion_model: EmotionClassifier | None = None,
                 prior: torch.Tensor | None = None):
        if (emotion_model is None) != (prior is None):
            raise ValueError("the emotion term needs both the emotion model and the reply prior")
        self.w_emo, self.w_sim, self.emotion_model, self.prior = w_emo, w_sim, emotion_model, prior

    @property
    def formula(self) -> str:
        return REWARD if self.emotion_model is not None else REWARD_WITHOUT_EMOTION

    def __call__(self, replies: Sequence[str], references: Sequence[str], classes: torch.Tensor) -> RewardTerms:
        similarity = torch.tensor([unigram_f1(r, e) for r, e in zip(replies, references)])
        if self.emotion_model is None:
            return RewardTerms(self.w_sim * similarity, torch.zeros_like(similarity), similarity)
        reply_probs = self.emotion_model.predict_proba(list(replies)).float().cpu()
        # One-hot "prompt" distribution: the fit is judged against the class the reply was conditioned on.
        onehot = torch.nn.functional.one_hot(classes.cpu(), len(self.prior)).float()
        fit = emotion_fit(reply_probs, onehot, self.prior)
        return RewardTerms(self.w_emo * fit + self.w_sim * similarity, fit, similarity)
