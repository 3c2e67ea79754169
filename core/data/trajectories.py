"""Conversations -> expert trajectories (history, prompt, response), split by conversation, cached on disk.

The row contract is in docs/architecture.md ("Expert trajectories"); docs/data.md explains the choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import datasets
import pyarrow as pa

from core import paths
from core.data import dailydialog, empathetic, uplifting
from core.data.records import SPLITS, Conversation, ReadReport, bucket
from core.data.dailydialog import DD_EMOTIONS
from core.data.empathetic import ED_EMOTIONS

__all__ = ["DD_EMOTIONS", "ED_EMOTIONS", "SOURCES", "DataConfig", "build_trajectories", "load_trajectories"]


class Source(NamedTuple):
    read: Callable[[Path], tuple[list[Conversation], ReadReport]]
    files: Callable[[Path], list[Path]]


READERS = {
    "empatheticdialogues": Source(empathetic.read_empatheticdialogues, empathetic.source_files),
    "dailydialog": Source(dailydialog.read_dailydialog, dailydialog.source_files),
    "quotes": Source(uplifting.read_quotes, uplifting.quote_files),
    "reframes": Source(uplifting.read_reframes, uplifting.reframe_files),
}
SOURCES = tuple(READERS)
SPLIT_MODES = ("official", "random")
# The paper: "Our train-test-validation split was 70-20-10 respectively", so fractions come in that order.
FRACTION_ORDER = ("train", "test", "valid")
FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "split": datasets.Value("string"),
        "conv_id": datasets.Value("string"),
        "turn": datasets.Value("int32"),
        "bucket": datasets.Value("string"),
        "history": datasets.List(datasets.Value("string")),
        "history_speakers": datasets.List(datasets.Value("string")),
        "prompt_speaker": datasets.Value("string"),
        "response_speaker": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "response": datasets.Value("string"),
        "emotion": datasets.Value("string"),
        "situation": datasets.Value("string"),
    }
)


@dataclass
class DataConfig:
    """Which sources, how to split them, and how to cut conversations into turns.

    split_mode: "official" keeps each release's own splits (quotes have none and are split at random);
    "random" splits every source's conversations at random. fractions: train, test, valid shares of a random
    split, in the paper's order. overlapping: a trajectory at every speaker change instead of u1->u2, u3->u4.
    """

    data_dir: str | None = None
    sources: tuple[str, ...] = SOURCES
    split_mode: str = "official"
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    overlapping: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.sources = tuple(self.sources)
        self.fractions = tuple(float(f) for f in self.fractions)
        unknown = [s for s in self.sources if s not in READERS]
        if unknown or not self.sources:
            raise ValueError(f"unknown or no sources {unknown or list(self.sources)}; known: {', '.join(SOURCES)}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode {self.split_mode!r}; expected one of {', '.join(SPLIT_MODES)}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(
                f"fractions {self.fractions}: expected 3 non-negative shares (train, test, valid) summing to 1"
            )


def read_conversations(config: DataConfig) -> tuple[list[Conversation], list[ReadReport]]:
    """Every selected source's conversations, each with the split it belongs to under `config`."""
    root = paths.data_dir(config.data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data directory not found: {root} (pass --data-dir or set ${paths.DATA_ENV}); expected it to hold "
            "empatheticdialogues/, dailydialog/ and uplifting_texts/ as described in docs/data.md"
        )
    conversations, reports = [], []
    for source in config.sources:
        read, report = READERS[source].read(root)
        if config.split_mode == "random" or source == "quotes":
            read = _seeded_split(read, f"{config.seed}:{source}", config.fractions)
        conversations += read
        reports.append(report)
    return conversations, reports


def _seeded_split(conversations: list[Conversation], seed: str, fractions: Sequence[float]) -> list[Conversation]:
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_train, n_test = round(fractions[0] * len(order)), round(fractions[1] * len(order))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[index] = "train" if rank < n_train else "test" if rank < n_train + n_test else "valid"
    return [dataclasses.replace(c, split=split_of[i]) for i, c in enumerate(conversations)]


def turn_starts(speakers: Sequence[str], overlapping: bool = False) -> list[int]:
    """Indices i whose utterance is a prompt answered by utterance i + 1 (a different speaker).

    Non-overlapping: u1->u2, u3->u4, ... (an utterance without a reply from the other speaker stays history);
    overlapping: one at every speaker change.
    """
    starts, i = [], 0
    while i + 1 < len(speakers):
        if speakers[i] != speakers[i + 1]:
            starts.append(i)
            i += 1 if overlapping else 2
        else:
            i += 1
    return starts


def conversation_trajectories(conversation: Conversation, overlapping: bool = False) -> list[dict]:
    """The expert trajectories of one conversation, as rows of the contract's columns."""
    utterances = conversation.utterances
    if conversation.source == "quotes":
        pairs = [([], utterances[0], utterances[0])]
    else:
        speakers = [u.speaker for u in utterances]
        pairs = [(utterances[:i], utterances[i], utterances[i + 1]) for i in turn_starts(speakers, overlapping)]
    return [
        {
            "source": conversation.source,
            "split": conversation.split,
            "conv_id": conversation.conv_id,
            "turn": turn,
            "bucket": bucket(turn),
            "history": [u.text for u in history],
            "history_speakers": [u.speaker for u in history],
            "prompt_speaker": prompt.speaker,
            "response_speaker": response.speaker,
            "prompt": prompt.text,
            "response": response.text,
            "emotion": conversation.emotion or prompt.emotion,
            "situation": conversation.situation,
        }
        for turn, (history, prompt, response) in enumerate(pairs)
    ]


def to_dataset_dict(conversations: list[Conversation], overlapping: bool = False) -> datasets.DatasetDict:
    columns = {split: {name: [] for name in FEATURES} for split in SPLITS}
    for conversation in conversations:
        target = columns[conversation.split]
        for row in conversation_trajectories(conversation, overlapping):
            for name, value in row.items():
                target[name].append(value)
    # Straight to Arrow: Dataset.from_dict would re-encode every value in Python, 3x slower here.
    schema = FEATURES.arrow_schema
    return datasets.DatasetDict(
        {split: datasets.Dataset(pa.Table.from_pydict(columns[split], schema=schema)) for split in SPLITS}
    )


def build_trajectories(config: DataConfig) -> datasets.DatasetDict:
    """Read the sources and cut them into trajectories (no cache; see load_trajectories)."""
    return to_dataset_dict(read_conversations(config)[0], config.overlapping)


def fingerprint(config: DataConfig) -> str:
    """Changes with the config, with any source file's size or mtime, and with this package's code."""
    root = paths.data_dir(config.data_dir)
    files = []
    for source in config.sources:
        for path in READERS[source].files(root):
            stat = path.stat() if path.is_file() else None
            files.append([str(path), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1])
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py"))))
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("data_dir", "cache_dir")}
    payload = {"settings": settings, "files": files, "code": code.hexdigest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def cache_path(config: DataConfig) -> Path:
    return paths.cache_dir(config.cache_dir) / "trajectories" / fingerprint(config)


# Trajectory caches kept per cache dir, counting the one just built: `train all` alone reads 4 configs (every
# source; ED + DD + reframes; ED; ED + DD), and each cache of the full data is about 65 MB.
KEEP_CACHES = 8
CACHE_NAME = re.compile(r"[0-9a-f]{20}")  # what fingerprint() returns; nothing else in the folder is ours


def load_trajectories(config: DataConfig) -> datasets.DatasetDict:
    """build_trajectories, saved under the cache dir and reused until the config, the files or the code change.

    A build prunes the cache dir to its KEEP_CACHES most recently used caches (prune_caches)."""
    target = cache_path(config)
    try:
        os.utime(target)  # a use: pruning keeps the most recently used caches
    except OSError:  # not built yet, or a read-only cache
        pass
    if not (target / "dataset_dict.json").is_file():
        built = build_trajectories(config)
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            # One shard per split: datasets writes no shard for an empty split and then cannot load it back.
            built.save_to_disk(str(partial), num_shards={split: 1 for split in built})
            try:
                partial.rename(target)
            except OSError:  # another process finished the same build first
                pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # gone once renamed; else an interrupted or failed save
        prune_caches(target.parent, KEEP_CACHES, current=target)
    return datasets.load_from_disk(str(target))


def seeded_subset(split: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most `limit` rows of a split, a seeded random subset when it has more: splits are ordered by source, so
    their first rows would all be one source."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))


def prune_caches(directory: Path, keep: int = KEEP_CACHES, current: Path | None = None) -> list[Path]:
    """Remove all but the `keep` most recently used (modified) finished caches in `directory`; returns them.

    Only folders named like a fingerprint and holding a saved DatasetDict count: builds still being written
    (`<fingerprint>.partial-<pid>`), links and anything else are never touched. `current` is always kept.
    """
    caches = []
    for path in directory.iterdir():
        if CACHE_NAME.fullmatch(path.name) and not path.is_symlink() and (path / "dataset_dict.json").is_file():
            try:
                caches.append((path == current, path.stat().st_mtime_ns, path))
            except OSError:  # removed meanwhile by another process
                continue
    caches.sort(reverse=True)
    removed = []
    for _, _, path in caches[max(keep, 1 if current else 0):]:
        # Renamed first, so that no reader ever finds a half-removed cache: it finds the whole one or none.
        doomed = path.with_name(f"{path.name}.pruned-{os.getpid()}")
        try:
            path.rename(doomed)
        except OSError:  # another process pruned it first
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed
