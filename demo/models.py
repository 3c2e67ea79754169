"""The models the app serves: found through the registry, loaded once, looked up only by name.

A visitor picks a model by the name shown in a dropdown; the path behind it comes from `list_models` over the
configured directories, so no request can point the app at another file.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from core.models.discriminator import DISCRIMINATOR_DIR, Discriminator
from core.models.emotion import EmotionClassifier
from core.models.generator import is_adapter, serving_dtype
from core.models.card import ModelCard, list_models
from core.registry import RESPONDERS, Responder, load_responder
from core.safety import check_checkpoint_dir
from core.serving import ReplyBatcher
from demo.settings import Settings

DEFAULT_ALGORITHM = "empathygail"
HOW_TO_MAKE = ("Train one with `python -m core train mle`, then `python -m core train empathygail` (see README), "
               "and reload this page.")
HOW_TO_MAKE_HERE = "Or start a short run in the Train tab: its model appears here when it is done."
EMOTION_HOW = "train it with `python -m core train emotion`"
LOADING = ("⏳ **Loading the models.** The first start on a machine converts the pretrained base (about 40 s on 2 "
           "cores); later starts take seconds. Send your message again in a moment.")


class NotAvailable(RuntimeError):
    """A part of the project the app needs has not been built or trained yet; the message says which."""


class ModelStore:
    """Every servable model the registry finds, with a small cache of loaded responders."""

    def __init__(self, settings: Settings, cache_size: int = 6):
        self.settings = settings
        self.cache_size = cache_size
        self.dtype = serving_dtype(settings.precision)
        self.batcher = ReplyBatcher(settings.max_batch)
        self.loading: str | None = None  # what the page says while `warm_up` runs
        self._loaded: OrderedDict[str, Responder] = OrderedDict()
        self._extras: dict[str, object] = {}
        self._guard = threading.Lock()

    def cards(self) -> dict[str, ModelCard]:
        """Label -> card, EmpathyGAIL first; labels are unique (a repeated name gets its folder added)."""
        cards = [c for c in list_models(*self.settings.model_dirs) if c.kind in RESPONDERS]
        cards.sort(key=lambda c: (c.algorithm != DEFAULT_ALGORITHM, Path(c.path).is_relative_to(
            self.settings.models_dir), c.name))
        names = [c.name for c in cards]
        return {(c.name if names.count(c.name) == 1 else f"{c.name} ({Path(c.path).name})"): c for c in cards}

    def labels(self) -> list[str]:
        return list(self.cards())

    def missing(self) -> str:
        """Markdown saying why no model can be served yet (still loading, or none trained and how to make one);
        empty when they can."""
        if self.loading:
            return self.loading
        if self.labels():
            return ""
        dirs = " or ".join(f"`{d}`" for d in self.settings.model_dirs)
        here = f" {HOW_TO_MAKE_HERE}" if self.settings.training_enabled else ""
        return f"**No model found.** No checkpoint (a folder with `model_card.json`) in {dirs}. {HOW_TO_MAKE}{here}"

    def prepare_base(self, log=print) -> None:
        """Convert the pretrained base before the first visitor waits for it (once per machine, about 40 s on 2
        cores); the models on it say why they are unavailable when it cannot be had."""
        if not any(c.kind == "base" or is_adapter(c.path) for c in self.cards().values()):
            return
        from core.models import base

        try:
            log(f"preparing the pretrained base {base.BASE_NAME} (converted once, then loaded in a second) ...")
            log(f"base ready in {base.ensure_base()}")
        except base.BaseUnavailable as error:
            log(f"warning: {error}")

    def warm_up(self, log=print) -> None:
        """Prepare the base and load the models before the first visitor waits for them; meanwhile `missing` says
        that they are loading, so that a request gets that answer rather than a long wait or an error."""
        self.loading = LOADING
        tic = time.perf_counter()
        try:
            self.prepare_base(log)
            labels = self.labels()[:self.cache_size]
            for label in labels:
                try:
                    self.responder(label)
                except NotAvailable as error:
                    log(f"warning: {error}")
            log(f"{len(labels)} models loaded in {time.perf_counter() - tic:.1f} s "
                f"({str(self.dtype).removeprefix('torch.')})")
        finally:
            self.loading = None

    def card(self, label: str) -> ModelCard:
        cards = self.cards()
        if not isinstance(label, str) or label not in cards:
            known = ", ".join(cards) or "none"
            raise NotAvailable(f"unknown model {str(label)[:80]!r}; available: {known}")
        return cards[label]

    def responder(self, label: str) -> Responder:
        """The loaded model behind `label`; a missing, refused or corrupt checkpoint raises NotAvailable."""
        card = self.card(label)
        with self._guard:
            if card.path in self._loaded:
                self._loaded.move_to_end(card.path)
                return self._loaded[card.path]
        responder = self._load(card)
        with self._guard:
            self._loaded[card.path] = responder
            while len(self._loaded) > self.cache_size:
                self._loaded.popitem(last=False)
        return responder

    def read_emotions(self, texts: list[str]) -> list[dict[str, float]]:
        """The emotion classifier's distribution over its labels for each text."""
        classifier = self._extra("emotion", self._load_emotion)
        probs = classifier.predict_proba(list(texts)).tolist()
        return [dict(zip(classifier.labels, row)) for row in probs]

    def judge(self) -> tuple[str, object]:
        """(model label, discriminator) used to score every model's replies alike: EmpathyGAIL's when it has one,
        else the first model that saved a discriminator."""
        return self._extra("judge", self._load_judge)

    def judge_scores(self, contexts: list[tuple[list[str], str]], replies: list[str]) -> tuple[str, list[float]]:
        label, discriminator = self.judge()
        with torch.no_grad():
            scores = discriminator.score(contexts, replies)
        return label, [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]

    def _extra(self, key: str, load):
        with self._guard:
            if key in self._extras:
                return self._extras[key]
        value = load()
        with self._guard:
            self._extras[key] = value
        return value

    def _load_emotion(self):
        """The shared classifier (checkpoints/emotion), else the one a GAIL model saved with its discriminator."""
        candidates = [self.settings.emotion_dir] + [Path(c.path) / DISCRIMINATOR_DIR / "emotion"
                                                    for c in self.cards().values()]
        directory = next((d for d in candidates if (d / "config.json").is_file()), None)
        if directory is None:
            raise NotAvailable(f"not available yet: no emotion classifier in {self.settings.emotion_dir} "
                               f"({EMOTION_HOW})")
        try:
            return EmotionClassifier.from_pretrained(self._checked(directory))
        except Exception as error:
            raise NotAvailable(f"the emotion classifier in {directory} could not be loaded: "
                               f"{type(error).__name__}: {str(error)[:300]}") from error

    def _load_judge(self):
        for label, card in self.cards().items():
            directory = Path(card.path) / DISCRIMINATOR_DIR
            if directory.is_dir():
                try:
                    return label, Discriminator.from_pretrained(self._checked(directory))
                except Exception as error:
                    raise NotAvailable(f"the discriminator of {label!r} in {directory} could not be loaded: "
                                       f"{type(error).__name__}: {str(error)[:300]}") from error
        raise NotAvailable(f"not available yet: no model has a trained discriminator (a `{DISCRIMINATOR_DIR}/` "
                           "folder beside its weights; GAIL runs save one)")

    def _checked(self, directory: str | Path) -> Path:
        """The directory once the safety layer accepts it: inside the model folders, safetensors only, intact."""
        return check_checkpoint_dir(directory, self.settings.model_dirs)

    def _load(self, card: ModelCard) -> Responder:
        try:
            return load_responder(card.path, allowed_roots=self.settings.model_dirs, dtype=self.dtype)
        except Exception as error:  # a corrupt checkpoint can fail in many libraries; the visitor sees why
            raise NotAvailable(f"model {card.name!r} at {card.path} could not be loaded: "
                               f"{type(error).__name__}: {str(error)[:300]}") from error
