"""Model cards: `model_card.json` beside every model's weights says what it is, how it was trained and how to load
it; listing and finding model directories reads only their cards."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.models import base
from core.safe_files import CHECKSUMS
from core.text import SYSTEM_PROMPT

CARD_FILE = "model_card.json"


@dataclass
class ModelCard:
    name: str
    algorithm: str  # base | pretrain | mle | rl_seq2seq | textgail | empathygail
    kind: str = "causal_lm"  # how to load it: causal_lm | base | seq2seq
    data: str = ""
    steps: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    hardware: str = ""
    base: dict[str, Any] = field(default_factory=dict)  # the pretrained base an adapter needs: name, source, hash
    started_from: dict[str, Any] = field(default_factory=dict)  # the trained model this one continued (lineage)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    path: str = field(default="", compare=False)  # where it was loaded from; not saved

    def save(self, directory: str | Path) -> None:
        values = {k: v for k, v in asdict(self).items() if k != "path"}
        Path(directory, CARD_FILE).write_text(json.dumps(values, indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        file = Path(directory, CARD_FILE)
        if not file.is_file():
            raise FileNotFoundError(f"{directory} is not a model directory: {CARD_FILE} is missing")
        try:
            values = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{file} is not valid JSON: {error}") from error
        known = {f.name for f in fields(cls)}
        missing = {"name", "algorithm"} - set(values)
        if missing:
            raise ValueError(f"{file} lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in values.items() if k in known}, path=str(Path(directory).resolve()))


def model_version(path: str | Path) -> str:
    """What tells two trainings of a model apart: the hash of its weights' checksums (of its card when it has no
    weights of its own, as the zero-shot base)."""
    file = Path(path, CHECKSUMS)
    return hashlib.sha256((file if file.is_file() else Path(path, CARD_FILE)).read_bytes()).hexdigest()


def lineage(path: str | Path) -> dict[str, Any]:
    """What a model that starts from the one at `path` records of it: which training of which model it was."""
    card = ModelCard.load(path)
    return {"name": card.name, "algorithm": card.algorithm, "steps": card.steps, "wall_time_s": card.wall_time_s,
            "created": card.created, "version": model_version(path)}


def list_models(*directories: str | Path) -> list[ModelCard]:
    """Every model directory (one holding a model card) directly in, or one level below, the given directories."""
    cards = []
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            continue
        for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            if (candidate / CARD_FILE).is_file():
                try:
                    cards.append(ModelCard.load(candidate))
                except ValueError:
                    continue  # a broken card is reported when that model is loaded, not while listing
    return cards


def find_model(name_or_path: str | Path, *directories: str | Path) -> Path:
    """A model directory given by path, or by the name on its card among the models in `directories`."""
    path = Path(name_or_path)
    if (path / CARD_FILE).is_file():
        return path.resolve()
    cards = list_models(*directories)
    for card in cards:
        if card.name == str(name_or_path) or Path(card.path).name == str(name_or_path):
            return Path(card.path)
    known = ", ".join(c.name for c in cards) or "none"
    raise FileNotFoundError(f"no model {str(name_or_path)!r}: not a model directory, and not among the models in "
                            f"{', '.join(map(str, directories))} (found: {known})")


def write_base_card(directory: str | Path, name: str = base.BASE_NAME) -> Path:
    """A card that serves a pretrained base as it is (zero-shot, no adapter): what fine-tuning starts from."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ModelCard(name="smollm2-base", algorithm="base", kind="base", base=base.base_info(name),
              config={"system_prompt": SYSTEM_PROMPT}).save(directory)
    return directory
