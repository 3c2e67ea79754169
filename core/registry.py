"""One interface for every model: model cards, `Responder`, and loading any checkpoint directory.

Scoring and the app talk to models only through `Responder`, so they never branch on a model's kind.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel

from core.models import base, seq2seq
from core.models.card import ModelCard, model_version
from core.models.generator import (BASE_ROW, Context, Decoding, adapter_base, context_length, generate, is_adapter,
                                   load_base_model, load_generator, reads_base_tokenizer, response_logprobs,
                                   using_adapter)
from core.models.model_thread import on_model_thread
from core.models.streaming import TokenQueue, stream_generation
from core.safe_files import check_checkpoint_dir, safe_path
from core.text import collate, encode, load_tokenizer

# One model call at a time per process: two calls would only share the same cores, the random stream that a seed
# fixes is global to torch, and adapters on a shared base are switched in place. The calls run on the model thread
# (core.models.model_thread); loading an adapter takes the lock from whichever thread loads.
MODEL_LOCK = threading.RLock()


@dataclass
class ResponseScore:
    logprob: float  # sum of log p over the reply's tokens (its end token included)
    n_tokens: int
    n_words: int

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob / max(self.n_tokens, 1))


class Responder(ABC):
    """A trained model behind the interface that scoring and the app use."""

    card: ModelCard

    def respond(self, history: Sequence[str], prompt: str, decoding: Decoding | None = None) -> str:
        return self.respond_batch([(history, prompt)], decoding)[0]

    def stream(self, history: Sequence[str], prompt: str, decoding: Decoding | None = None) -> Iterator[str]:
        """The reply as it is written; the last text is `respond`'s for the same seed."""
        for texts in self.stream_batch([(history, prompt)], decoding):
            yield texts[0]

    def stream_batch(self, contexts: Sequence[Context], decoding: Decoding | None = None) -> Iterator[list[str]]:
        """Every reply so far after each decoding step; a model that cannot stream gives its replies whole."""
        yield self.respond_batch(contexts, decoding)

    @abstractmethod
    def respond_batch(self, contexts: Sequence[Context], decoding: Decoding | None = None) -> list[str]:
        """One sampled (or greedy) reply per (history, prompt)."""

    @abstractmethod
    def score_batch(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[ResponseScore]:
        """Log-likelihood of each given reply, for perplexity."""


class SharedBase:
    """One copy of a pretrained base per process and device, shared by the zero-shot base and every adapter on it
    (three adapters cost 12 MB, three copies of the base 1.6 GB). A call holds MODEL_LOCK with its adapter active."""

    _instances: dict[tuple[str, str], SharedBase] = {}
    _creating = threading.Lock()

    def __init__(self, name: str, device: str | torch.device, dtype: torch.dtype = torch.float32):
        if base.is_base(name):  # the converted base is checked like any checkpoint before it is loaded
            folder = base.ensure_base()
            check_checkpoint_dir(folder, [folder])
        self.model = load_base_model(name, device, dtype)
        self.folder = Path(base.resolve(name))
        self.tokenizer = load_tokenizer(self.folder)
        self.peft: PeftModel | None = None

    @classmethod
    def get(cls, name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> SharedBase:
        with cls._creating:
            key = (name, str(device), str(dtype))
            if key not in cls._instances:
                cls._instances[key] = cls(name, device, dtype)
            return cls._instances[key]

    def attach(self, path: Path) -> str:
        """Load the adapter in `path` onto the base (once per distinct weights); returns its name."""
        name = "a" + model_version(path)[:16]
        with MODEL_LOCK:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
            elif name not in self.peft.peft_config:
                self.peft.load_adapter(str(path), adapter_name=name)
        return name

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[PreTrainedModel]:
        with MODEL_LOCK:
            if self.peft is None:
                yield self.model
            else:
                with using_adapter(self.peft, adapter):
                    yield self.peft

    @on_model_thread
    def generate_mixed(self, adapters: Sequence[str | None], contexts: Sequence[Context], decoding: Decoding,
                       streamer: TokenQueue | None = None) -> list[str]:
        """One batched call in which row i answers with adapter `adapters[i]` (None: the base alone)."""
        with MODEL_LOCK:
            if self.peft is None:
                return generate(self.model, self.tokenizer, contexts, decoding, streamer).texts
            names = [a or BASE_ROW for a in adapters]
            return generate(self.peft, self.tokenizer, contexts, decoding, streamer, names).texts

    def stream_mixed(self, adapters: Sequence[str | None], contexts: Sequence[Context], decoding: Decoding
                     ) -> Iterator[list[str]]:
        return stream_generation(lambda streamer: self.generate_mixed(adapters, contexts, decoding, streamer),
                                 self.tokenizer, len(contexts))


class CausalLMResponder(Responder):
    """A causal LM: a model of its own, or an adapter (or none: the zero-shot base) on a shared base."""

    def __init__(self, model, tokenizer, card: ModelCard, shared: SharedBase | None = None, adapter: str | None = None):
        self.model, self.tokenizer, self.card = model.eval(), tokenizer, card
        self.shared, self.adapter = shared, adapter

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> CausalLMResponder:
        card = ModelCard.load(path)
        if card.kind == "base":
            shared = SharedBase.get(card.base["name"], device, dtype)
            return cls(shared.model, shared.tokenizer, card, shared)
        if is_adapter(path):
            shared = SharedBase.get(adapter_base(path), device, dtype)
            tokenizer = shared.tokenizer if reads_base_tokenizer(path) else load_tokenizer(path)
            return cls(shared.model, tokenizer, card, shared, shared.attach(Path(path)))
        return cls(load_generator(path, device, dtype=dtype), load_tokenizer(path), card)

    @contextmanager
    def _active(self) -> Iterator[PreTrainedModel]:
        if self.shared is None:
            with MODEL_LOCK:
                yield self.model
        else:
            with self.shared.using(self.adapter) as model:
                yield model

    @on_model_thread
    def respond_batch(self, contexts: Sequence[Context], decoding: Decoding | None = None,
                      streamer: TokenQueue | None = None) -> list[str]:
        with self._active() as model:
            return generate(model, self.tokenizer, contexts, decoding or Decoding(), streamer).texts

    def stream_batch(self, contexts: Sequence[Context], decoding: Decoding | None = None) -> Iterator[list[str]]:
        return stream_generation(lambda streamer: self.respond_batch(contexts, decoding, streamer), self.tokenizer,
                                 len(contexts))

    @on_model_thread
    @torch.no_grad()
    def score_batch(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[ResponseScore]:
        max_length = context_length(self.model)
        encoded = [encode(self.tokenizer, h, p, r, max_length=max_length, max_response_tokens=max_length // 2)
                   for (h, p), r in zip(contexts, responses)]
        batch = {k: v.to(self.model.device) for k, v in collate(encoded, self.tokenizer.pad_token_id).items()}
        with self._active() as model:
            logp = response_logprobs(model, **batch)
        n_tokens = batch["response_mask"].sum(dim=1).tolist()
        return [ResponseScore(logprob=float(lp), n_tokens=int(n), n_words=max(1, len(r.split()) + 1))
                for lp, n, r in zip(logp.sum(dim=1).tolist(), n_tokens, responses)]


class Seq2SeqResponder(Responder):
    """The RL-Seq2Seq baseline: the emotion model saved beside it picks the class each reply is conditioned on."""

    def __init__(self, model: seq2seq.Seq2Seq, tokenizer, card: ModelCard, emotion_model=None):
        self.model, self.tokenizer, self.card, self.emotion_model = model.eval(), tokenizer, card, emotion_model

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> Seq2SeqResponder:
        """`dtype` is accepted like every responder's and not used: the small GRU baseline always runs in float32."""
        model, tokenizer, emotion_model = seq2seq.load_seq2seq(path, device)
        return cls(model, tokenizer, ModelCard.load(path), emotion_model)

    def _classes(self, contexts: Sequence[Context]) -> torch.Tensor:
        return seq2seq.classify_contexts(self.model.config, self.emotion_model, contexts)

    @on_model_thread
    def respond_batch(self, contexts: Sequence[Context], decoding: Decoding | None = None) -> list[str]:
        with MODEL_LOCK:
            return seq2seq.generate(self.model, self.tokenizer, contexts, self._classes(contexts),
                                    decoding or Decoding()).texts

    @on_model_thread
    def score_batch(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[ResponseScore]:
        with MODEL_LOCK:
            logprobs, n_tokens = seq2seq.score_replies(self.model, self.tokenizer, contexts, responses,
                                                       self._classes(contexts))
        return [ResponseScore(logprob=float(lp), n_tokens=int(n), n_words=max(1, len(r.split()) + 1))
                for lp, n, r in zip(logprobs, n_tokens, responses)]


# kind "base": a card with no weights of its own, naming a pretrained base served as it is (zero-shot)
RESPONDERS: dict[str, type[Responder]] = {"causal_lm": CausalLMResponder, "base": CausalLMResponder,
                                          "seq2seq": Seq2SeqResponder}


def load_responder(path: str | Path, device: str | torch.device = "cpu",
                   allowed_roots: Sequence[str | Path] | None = None, dtype: torch.dtype = torch.float32) -> Responder:
    """The model in `path`, once the safety layer accepts the directory: safetensors only (no pickle), every weight
    file intact and matching its checksums.json, nothing reaching outside `allowed_roots` (default: the directory
    itself). A refused directory raises `core.safety.CheckpointError` naming the file and what is wrong. `dtype` is
    the precision a language model computes in (see `precision`)."""
    card = ModelCard.load(path)
    if card.kind not in RESPONDERS:
        raise ValueError(f"{path}: unknown model kind {card.kind!r}; known: {', '.join(RESPONDERS)}")
    directory = safe_path(path, allowed_roots or [path]) if card.kind == "base" else \
        check_checkpoint_dir(path, allowed_roots or [path])
    return RESPONDERS[card.kind].from_pretrained(directory, device=device, dtype=dtype)


def stream_together(responders: Sequence[Responder], context: Context, decoding: Decoding | None = None
                    ) -> Iterator[list[str]]:
    """Every responder's reply to one context as the replies grow. The adapters (and the zero-shot base) on one
    shared base answer in one batched call, a row per adapter; every other model answers in a call of its own."""
    decoding = decoding or Decoding()
    texts = [""] * len(responders)
    groups: dict[int, list[int]] = {}
    calls: list[tuple[list[int], Iterator[list[str]]]] = []
    for row, responder in enumerate(responders):
        shared = getattr(responder, "shared", None)
        if shared is None:
            calls.append(([row], responder.stream_batch([context], decoding)))
        else:
            groups.setdefault(id(shared), []).append(row)
    for rows in groups.values():
        shared = responders[rows[0]].shared
        calls.append((rows, shared.stream_mixed([responders[r].adapter for r in rows], [context] * len(rows),
                                                decoding)))
    for rows, stream in calls:
        for step in stream:
            for row, text in zip(rows, step):
                texts[row] = text
            yield list(texts)
