"""The semantic crisis layer: what the rule table passes, a sentence encoder reads for meaning.

A phrase table cannot list every way people say they are in danger ("the rope is tied to the beam", "I'm sitting on
the ledge", "I hope I don't wake up"). Here the message, normalised as the rules read it (so "kms" and "sewerslide"
are words), is read by the offline all-MiniLM-L6-v2 with its top layers fine-tuned for the task (mean-pooled, unit
length), and a linear head gives the probability of `none` and of each crisis category. The head also reads a
context flag, set when one of the last turns was a crisis, so that "yes", "tonight" or "I already have them" after
one count while "thank you, I will call them" does not. A message is a crisis when 1 - p(none) reaches the
threshold stored with the weights. A head may also carry an index (the neighbour reading): its vectors of the written
messages and of ordinary utterances, so that a message read alone is scored by the mean of 1 - p(none) and the crisis
share of its nearest neighbours, against a threshold of its own; after a crisis turn the head reads alone.

`python -m core.safety.train_semantic` trains the layer and chooses its threshold on data; checkpoints/crisis/ holds
the result (model*.safetensors, in shards: the fine-tuned layers, the head, the index and the thresholds, with
checksums.json; config.json; training.json says what it was trained on and how the thresholds were chosen). Without
MiniLM or that folder, crisis recognition keeps working with the rules alone, and says so once in the log.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from core import paths
from core.models.encoder import MINILM, EncoderConfig, EncoderModel, TextEncoder
from core.safe_files import check_checkpoint_dir
from core.safety.crisis import CONTEXT_TURNS, CRISIS_REPLY, CrisisAssessment, assess_rules, normalise
from core.safety.phrasings import LABELS, NONE

HEAD_DIR = paths.REPO_ROOT / "checkpoints" / "crisis"
TRAINING_FILE = "training.json"  # what the head was trained on and how its threshold was chosen
CACHED = 1024  # pooled outputs kept: each turn of a conversation is read again as history of the next ones

log = logging.getLogger(__name__)


def features(embeddings: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The head's input: the embedding, the embedding again where a crisis came before (so the context can change
    what a message means, not only shift it), and the context flag itself."""
    flag = context.to(embeddings.dtype).unsqueeze(-1)
    return torch.cat([embeddings, embeddings * flag, flag], dim=-1)


def crisis_mass(logits: torch.Tensor) -> torch.Tensor:
    """1 - p(none) of the head's logits over LABELS."""
    return 1.0 - torch.softmax(logits, dim=-1)[..., LABELS.index(NONE)]


@dataclass
class CrisisConfig:
    # all-MiniLM-L6-v2 was trained on 128 word pieces (a longer message keeps its end); its top layers are
    # fine-tuned for the task and saved, the rest reloads from the package.
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name_or_path=MINILM, freeze=True,
                                                                         train_top_layers=2, max_length=128))
    # The neighbour reading: how many written messages and ordinary utterances the index holds (none: the head reads
    # alone), how many nearest ones are read, and the temperature of the softmax over their cosines.
    index_written: int = 0
    index_ordinary: int = 0
    neighbours: int = 10
    neighbour_temperature: float = 0.05


class CrisisClassifier(EncoderModel):
    """MiniLM (top layers fine-tuned) -> unit-length mean-pooled vector -> linear head over LABELS, and, with an
    index, the crisis share of the vector's nearest written messages and ordinary utterances beside it."""

    config_class = CrisisConfig

    def __init__(self, config: CrisisConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config.encoder, tokenizer)
        self.head = nn.Linear(2 * self.encoder.dim + 1, len(LABELS))
        # Saved with the weights, so that checksums.json covers the decision as well as the scores: `threshold`
        # decides `reading`; with an index, `head_threshold` decides the head's reading after a crisis turn.
        self.register_buffer("threshold", torch.tensor(1.0))
        if self.indexed:
            # float16 in memory as on disk: every message is multiplied with the whole index, and reading half the
            # bytes is most of that product's time. The ordinary utterances are all `none`, so only the written
            # messages carry labels; two tensors also keep each under a shard's size.
            self.register_buffer("written_vectors", torch.zeros(config.index_written, self.encoder.dim,
                                                                dtype=torch.float16))
            self.register_buffer("written_crisis", torch.zeros(config.index_written))  # 1.0 for a crisis message
            self.register_buffer("ordinary_vectors", torch.zeros(config.index_ordinary, self.encoder.dim,
                                                                 dtype=torch.float16))
            self.register_buffer("head_threshold", torch.tensor(1.0))

    @property
    def indexed(self) -> bool:
        return bool(self.config.index_written or self.config.index_ordinary)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return nn.functional.normalize(self.encoder.encode([[text] for text in texts]), dim=-1)

    def logits(self, embeddings: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.head(features(embeddings, context))

    def head_probability(self, embeddings: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The head's 1 - p(none)."""
        return crisis_mass(self.logits(embeddings, context))

    def neighbour_score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The crisis share of the `neighbours` index vectors nearest each embedding, weighted by a softmax of their
        cosines at `neighbour_temperature`."""
        query = embeddings.to(torch.float16)
        cosines = torch.cat([query @ self.written_vectors.T, query @ self.ordinary_vectors.T], dim=-1).float()
        crisis = torch.cat([self.written_crisis, self.written_crisis.new_zeros(self.config.index_ordinary)])
        nearest, at = cosines.topk(min(self.config.neighbours, len(crisis)), dim=-1)
        weights = torch.softmax(nearest / self.config.neighbour_temperature, dim=-1)
        return (weights * crisis[at]).sum(-1)

    def reading(self, embeddings: torch.Tensor, context: torch.Tensor,
                head: torch.Tensor | None = None) -> torch.Tensor:
        """The score `thresholds` decides on: the head's 1 - p(none) (`head`, when the caller has it already), and
        for a message read alone, with an index, its mean with the neighbour score. After a crisis turn the head
        reads alone: the index holds messages read alone, and a follow-up ("yes, tonight") has ordinary neighbours."""
        head = self.head_probability(embeddings, context) if head is None else head
        if not self.indexed:
            return head
        return torch.where(context, head, (head + self.neighbour_score(embeddings)) / 2)

    def thresholds(self, context: torch.Tensor) -> torch.Tensor:
        if not self.indexed:
            return self.threshold.expand(context.shape)
        return torch.where(context, self.head_threshold, self.threshold)

    @torch.inference_mode()
    def crisis_probability(self, texts: Sequence[str], context: Sequence[bool] | None = None) -> torch.Tensor:
        """The reading of each normalised text, computed in batches of similar length (a batch is padded to its
        longest text, so mixing a story with one-word replies would cost most of the time)."""
        flags = torch.tensor(list(context) if context is not None else [False] * len(texts), dtype=torch.bool)
        return self.reading(self.embed_all(texts), flags)

    @torch.inference_mode()
    def embed_all(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """`embed` in batches of similar length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), self.encoder.dim)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self.embed([texts[i] for i in rows])
        return out


@dataclass(frozen=True)
class Judgement:
    is_crisis: bool
    probability: float  # the model's reading: 1 - p(none), with an index its mean with the neighbour score
    category: str | None  # the likeliest crisis category, whether or not it is a crisis
    context: bool  # read as following a crisis turn
    threshold: float = 1.0  # the one the reading was decided by
    bound: bool = False  # `probability` is the most the reading can be: the index was not read (SemanticLayer._read)


class SemanticLayer:
    """A trained CrisisClassifier as one message at a time sees it: earlier turns, a cache, a decision."""

    def __init__(self, model: CrisisClassifier):
        self.model = model.eval()
        self.threshold = float(model.threshold)  # a message read alone's
        self._cached = lru_cache(maxsize=CACHED)(self._embed_one)

    @classmethod
    def load(cls, directory: str | Path = HEAD_DIR) -> SemanticLayer:
        """The head in `directory`, checked like every checkpoint (safetensors only, checksums), on MiniLM."""
        directory = check_checkpoint_dir(directory, [Path(directory).parent])
        return cls(CrisisClassifier.from_pretrained(directory))

    def forget(self) -> None:
        """Drop the remembered vectors (the bench times messages read for the first time)."""
        self._cached.cache_clear()

    @torch.inference_mode()
    def _embed_one(self, normalised: str) -> torch.Tensor:
        return self.model.embed([normalised])[0]

    @torch.inference_mode()
    def _read(self, embedding: torch.Tensor, context: bool) -> Judgement:
        embeddings, flags = embedding.unsqueeze(0), torch.tensor([context])
        logits = self.model.logits(embeddings, flags)
        category = LABELS[1 + int(logits[0, 1:].argmax())]
        head = crisis_mass(logits)
        threshold = self.model.thresholds(flags).item()
        if self.model.indexed and not context:
            # The neighbour score is at most 1, so where even a score of 1 leaves the mean under the threshold the
            # decision is known without the product with the whole index, most of the index's time. (The margin
            # covers a softmax whose weights sum to a hair over 1 in float32.)
            most = (head.item() + 1.0) / 2
            if most < threshold - 1e-6:
                return Judgement(False, most, category, context, threshold, bound=True)
        crisis = self.model.reading(embeddings, flags, head).item()
        return Judgement(crisis >= threshold, crisis, category, context, threshold)

    def judge(self, text: str, history: Sequence[object] = (), rules_context: bool = True) -> Judgement:
        """The layer's reading of the newest message. The earlier turns are looked at only when the message alone
        is not a crisis: a recent turn is a crisis when it holds CRISIS_REPLY, this layer reads it as one on its
        own, or (with `rules_context`) the rule table does."""
        normalised = normalise("" if text is None else str(text))
        if not normalised.strip():
            return Judgement(False, 0.0, None, False)
        embedding = self._cached(normalised)
        alone = self._read(embedding, False)
        if alone.is_crisis or not self.crisis_before(history, rules_context):
            return alone
        return self._read(embedding, True)

    def crisis_before(self, history: Sequence[object], rules_context: bool) -> bool:
        """Whether one of the last CONTEXT_TURNS turns is a crisis turn, as `judge` decides it."""
        recent = [turn for turn in (list(history)[-CONTEXT_TURNS:] if isinstance(history, (list, tuple)) else [])
                  if isinstance(turn, str) and turn.strip()]
        if any(CRISIS_REPLY in turn for turn in recent):
            return True
        if rules_context and any(assess_rules(turn).is_crisis for turn in recent):
            return True
        return any(self._read(self._cached(normalise(turn)), False).is_crisis for turn in recent)


_LOCK = threading.Lock()
_LAYER: list[SemanticLayer | None] = []  # empty until the first load; [None] when it could not load


def layer() -> SemanticLayer | None:
    """The shipped layer, loaded once per process; None (logged once) when MiniLM or the head is missing."""
    with _LOCK:
        if not _LAYER:
            try:
                _LAYER.append(SemanticLayer.load(HEAD_DIR))
            except (OSError, ValueError, KeyError) as error:  # CheckpointError is a ValueError
                log.warning("crisis recognition runs on the rules alone: the semantic layer did not load (%s)", error)
                _LAYER.append(None)
        return _LAYER[0]


def second_opinion(text: str, history: Sequence[str], found: CrisisAssessment) -> CrisisAssessment:
    """The rules' assessment `found` of a message they did not flag, with the semantic layer's reading added: a
    crisis when the layer reads one, otherwise the same assessment with the layer's probability in its reason."""
    semantic = layer()
    if semantic is None:
        return found
    judged = semantic.judge(text, history)
    after = " after a crisis turn" if judged.context else ""
    p = f"p<={judged.probability:.2f}" if judged.bound else f"p={judged.probability:.2f}"
    reading = f"semantic {p}{after} (threshold {judged.threshold:.2f})"
    if not judged.is_crisis:
        return CrisisAssessment(False, None, found.score, found.rules, f"{found.reason}; {reading}")
    rules = (*found.rules, "semantic/context" if judged.context else "semantic/message")
    return CrisisAssessment(True, judged.category, max(found.score, judged.probability / judged.threshold), rules,
                            f"{judged.category}: {reading}; rules: {found.reason}")


def read_training(directory: str | Path = HEAD_DIR) -> dict:
    """What the head was trained on and how its threshold was chosen (training.json)."""
    return json.loads((Path(directory) / TRAINING_FILE).read_text())
