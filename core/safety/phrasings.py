"""The written messages the semantic crisis layer learns from (data/train.txt) and is measured on (data/heldout.txt,
data/heldout_b.txt).

Each line is "label | message" or "label | earlier turn || message", the label one of the crisis categories or
`none`. The held-out files are never read by training (`core.safety.train_semantic`); only the bench reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.safety.crisis import CATEGORIES

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN = DATA_DIR / "train.txt"
HELDOUT = DATA_DIR / "heldout.txt"
HELDOUT_B = DATA_DIR / "heldout_b.txt"  # a second held-out part, by a second author (see its header)
NONE = "none"
LABELS = (NONE, *CATEGORIES)
TURN_BREAK = " || "


@dataclass(frozen=True)
class Labelled:
    label: str  # one of LABELS
    text: str  # the newest message
    history: tuple[str, ...] = ()  # the user's earlier turns, oldest first

    @property
    def is_crisis(self) -> bool:
        return self.label != NONE


def read_labelled(path: Path) -> list[Labelled]:
    """The labelled messages of a file in the format above; comments (#) and blank lines are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"labelled message file {path} not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, rest = line.partition(" | ")
        if not sep or label not in LABELS or not rest.strip():
            raise ValueError(f"{path}:{number}: expected 'label | message' with a label in {LABELS}, got {line!r}")
        *earlier, text = [part.strip() for part in rest.split(TURN_BREAK)]
        rows.append(Labelled(label, text, tuple(earlier)))
    return rows
