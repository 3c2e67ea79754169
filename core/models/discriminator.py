"""The discriminator D(history, prompt, response) -> probability that the reply is the expert's.

A text encoder (its own tokenizer, so the generator's may differ) reads `[history...] prompt [SEP] reply`, and the
method's head (two hidden layers of 100 units, tanh) turns the pooled vector into a logit. Two modes:

- `binary` (equation 6): BCE, expert replies labelled 1 and generated ones 0; D = sigmoid(logit).
- `contrastive` (TextGAIL): the expert's and a generated reply to the same context compete in a softmax over the
  pair; the loss is -log p(expert chosen) and the score of a reply is its probability of being chosen against
  the expert's reply, sigmoid(logit_reply - logit_expert).

`use_emotion_features` (EmpathyGAIL) appends the emotional course of the conversation to the head's input: the
emotion model's distribution over the prompt, the last earlier utterance, the mean over all earlier utterances,
and the reply itself, so D can judge whether the reply's emotion fits where the conversation has been.
`use_history=False` (TextGAIL) hides the history from both the text and the emotional course.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from core.models.emotion import EmotionClassifier
from core.models.encoder import CONFIG_FILE, MINILM, EncoderConfig, EncoderModel, TextEncoder
from core.safe_files import write_checksums
from core.text import Context

MODES = ("binary", "contrastive")
EMOTION_DIR = "emotion"
COURSE_PARTS = 4  # prompt, last earlier utterance, mean of earlier utterances, reply

DISCRIMINATOR_DIR = "discriminator"  # beside a GAIL model's weights


def discriminator_dir(path: str | Path) -> Path:
    """The discriminator a GAIL model saved beside its weights, or `path` itself when it is one."""
    path = Path(path)
    return path / DISCRIMINATOR_DIR if (path / DISCRIMINATOR_DIR).is_dir() else path


@dataclass
class DiscriminatorConfig:
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name_or_path=MINILM))
    mode: str = "binary"  # binary | contrastive
    use_history: bool = True
    use_emotion_features: bool = False
    emotion_model: str | None = None  # a saved EmotionClassifier dir (use_emotion_features); GAIL sets it
    head_hidden: int = 100
    # true: the head also reads the mean over the reply's own tokens. The mean over all tokens is mostly the
    # context's, which is the same for an expert and a generated reply (scripts/probe_discriminator.py measures it).
    pool_reply: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"discriminator mode {self.mode!r}; expected one of {', '.join(MODES)}")


@dataclass
class DiscriminatorOutput:
    loss: torch.Tensor
    accuracy: float  # binary: share of all replies classified right; contrastive: share of pairs ranked right
    expert_score: float  # mean probability D gives expert replies
    generated_score: float  # mean probability D gives generated replies


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, mode: str) -> DiscriminatorOutput:
    """From D's logits for expert (`real`) and generated (`fake`) replies to the same contexts."""
    if mode == "binary":
        loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        correct = torch.cat([real > 0, fake < 0]).float().mean()
        real_score, fake_score = torch.sigmoid(real), torch.sigmoid(fake)
    else:
        loss = F.softplus(fake - real).mean()  # -log softmax([real, fake])[0]
        correct = (real > fake).float().mean()
        fake_score = torch.sigmoid(fake - real)
        real_score = 1 - fake_score
    return DiscriminatorOutput(loss=loss, accuracy=correct.item(), expert_score=real_score.mean().item(),
                               generated_score=fake_score.mean().item())


class Discriminator(EncoderModel):
    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig, tokenizer=None, emotion: EmotionClassifier | None = None):
        super().__init__()
        if config.use_emotion_features and emotion is None and not config.emotion_model:
            raise ValueError("use_emotion_features needs emotion_model: the directory of a trained emotion "
                             "classifier (python -m core train emotion)")
        self.config = config
        self.encoder = TextEncoder(config.encoder, tokenizer)
        self.emotion = None
        course = 0
        if config.use_emotion_features:
            # A fixed judge: D learns to read it, not to change it.
            self.emotion = (emotion or EmotionClassifier.from_pretrained(config.emotion_model)).freeze()
            course = COURSE_PARTS * len(self.emotion.labels)
        width = config.head_hidden
        pooled = self.encoder.dim * (2 if config.pool_reply else 1)
        self.head = nn.Sequential(nn.Linear(pooled + course, width), nn.Tanh(),
                                  nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))

    def utterances(self, context: Context) -> list[str]:
        """What D reads of a context (before the reply): history only if `use_history`."""
        history, prompt = context
        return [*history, prompt] if self.config.use_history else [prompt]

    def emotion_course(self, contexts: Sequence[Context], responses: Sequence[str]) -> torch.Tensor:
        """[n, 4 * n_emotions]: prompt, last earlier utterance, mean of earlier utterances (zeros without
        history), reply. Each distinct text is classified once per call."""
        histories = [list(h) if self.config.use_history else [] for h, _ in contexts]
        texts = list(dict.fromkeys([t for h in histories for t in h] + [p for _, p in contexts] + list(responses)))
        probs = self.emotion.predict_proba(texts)
        row = {t: i for i, t in enumerate(texts)}
        zeros = probs.new_zeros(probs.shape[1])
        parts = []
        for history, (_, prompt), reply in zip(histories, contexts, responses):
            earlier = probs[[row[t] for t in history]] if history else None
            parts.append(torch.cat([probs[row[prompt]], zeros if earlier is None else earlier[-1],
                                    zeros if earlier is None else earlier.mean(0), probs[row[reply]]]))
        return torch.stack(parts)

    def forward(self, contexts: Sequence[Context], responses: Sequence[str]) -> torch.Tensor:
        """One logit per (context, reply); the training loop calls this (through DDP when data-parallel)."""
        if len(contexts) != len(responses):
            raise ValueError(f"{len(contexts)} contexts but {len(responses)} responses")
        pooled = self.encoder.encode([self.utterances(c) for c in contexts], responses, self.config.pool_reply)
        if self.emotion is not None:
            pooled = torch.cat([pooled, self.emotion_course(contexts, responses).to(pooled.dtype)], dim=-1)
        return self.head(pooled).squeeze(-1)

    @torch.no_grad()
    def score(self, contexts: Sequence[Context], responses: Sequence[str],
              experts: Sequence[str] | None = None) -> torch.Tensor:
        """Probability that each reply is the expert's. Contrastive mode compares against `experts` (the expert
        replies to the same contexts); without them it returns sigmoid(logit), monotone but uncalibrated."""
        logits = self(contexts, responses)
        if self.config.mode == "contrastive" and experts is not None:
            logits = logits - self(contexts, experts)
        return torch.sigmoid(logits)

    def loss(self, contexts: Sequence[Context], expert: Sequence[str], generated: Sequence[str]) -> DiscriminatorOutput:
        """Equation 6 (binary) or TextGAIL's pair loss (contrastive), expert and generated replies to `contexts`."""
        both = self(list(contexts) * 2, list(expert) + list(generated))
        return discriminator_loss(both[:len(expert)], both[len(expert):], self.config.mode)

    # Saving: the emotion model lives in its own subfolder, so it is stored once and can be used on its own.

    def saved_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in super().saved_state().items() if not k.startswith("emotion.")}

    def save_pretrained(self, directory: str | Path, dtype: str | None = None) -> Path:
        directory = super().save_pretrained(directory, dtype)
        if self.emotion is not None:
            self.emotion.save_pretrained(directory / EMOTION_DIR)
            config = json.loads((directory / CONFIG_FILE).read_text())
            config["emotion_model"] = EMOTION_DIR
            (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
            write_checksums(directory)  # again, now that the emotion model's weights are in it too
        return directory

    @classmethod
    def read_config(cls, directory: str | Path) -> DiscriminatorConfig:
        config = super().read_config(directory)
        if config.emotion_model == EMOTION_DIR:
            config = dataclasses.replace(config, emotion_model=str(Path(directory) / EMOTION_DIR))
        return config
