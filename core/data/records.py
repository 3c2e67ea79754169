"""What every reader of a dialogue source shares: the conversation record, the read report, text-file helpers,
and the turn buckets trajectories and scores are grouped by."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

SPLITS = ("train", "valid", "test")
EXAMPLES_PER_REASON = 3


class Utterance(NamedTuple):
    speaker: str
    text: str
    emotion: str = ""


@dataclass
class Conversation:
    """One conversation as read from disk; `split` is the official split (or "" where a source has none)."""

    source: str
    split: str
    conv_id: str
    utterances: list[Utterance]
    emotion: str = ""
    situation: str = ""
    acts: list[str] = field(default_factory=list)


@dataclass
class ReadReport:
    """What a reader saw: rows read, rows skipped by reason, oddities kept (notes), a few examples of each."""

    source: str
    rows_read: int = 0
    conversations: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, where: str, text: str = "") -> None:
        self.skipped[reason] += 1
        self._example(reason, where, text)

    def note(self, reason: str, where: str, text: str = "", count: int = 1) -> None:
        self.notes[reason] += count
        self._example(reason, where, text)

    def _example(self, reason: str, where: str, text: str) -> None:
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            shown = text if len(text) <= 80 else text[:77] + "..."
            examples.append(f"{where}: {shown!r}" if text else where)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "conversations": self.conversations,
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "examples": self.examples,
        }

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.rows_read:,} rows read, {self.rows_skipped:,} skipped, "
            f"{self.conversations:,} conversations"
        ]
        for kind, counts in (("skipped", self.skipped), ("kept", self.notes)):
            for reason, count in sorted(counts.items()):
                lines.append(f"  {kind} {count:,} x {reason}")
                lines.extend(f"      e.g. {example}" for example in self.examples.get(reason, []))
        return "\n".join(lines)


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 file so that undecodable bytes survive as surrogates and cost one row, not the whole file."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def badly_encoded(*texts: str) -> bool:
    return any(_UNDECODABLE.search(text) for text in texts)


def require_file(path: Path, what: str, layout: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}\nexpected layout under the data directory:\n{layout}")
    return path


BUCKETS = ("1", "2", "3+")  # turn 0 (no history), turn 1, turn >= 2: the method's 1-, 2- and 3+-turn conversations


def bucket(turn: int) -> str:
    """The turn bucket of a 0-based turn index."""
    if turn < 0:
        raise ValueError(f"turn must be >= 0, got {turn}")
    return BUCKETS[min(turn, 2)]
