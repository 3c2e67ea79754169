"""The messages crisis recognition learns from and is measured on, and their readers.

- tests/fixtures/crisis/train.txt (the semantic layer learns from it), heldout.txt, heldout_b.txt, heldout_c.txt and
  heldout_d.txt (only the bench reads them, never training: `core.safety.train_semantic`): each line is
  "label | message" or "label | earlier turn || message", the label one of the crisis categories or `none`; an
  earlier turn written "(ordinary) ..." is marked as not a crisis (train.txt: its other earlier turns are crisis
  turns, so training knows what the context flag would say without asking the layer it trains);
- tests/fixtures/crisis_phrasings.txt and non_crisis_phrasings.txt, the lists the rule table was written against.
  All of these are the project's own writing, kept with the tests' fixtures (the datasets of ../shared/data are
  not the project's and are never committed);
- the EmpatheticDialogues and DailyDialog utterances of a split (`real_prompts`): train to learn from, validation to
  choose the threshold on, test for the bench.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core import paths
from core.safety.crisis import CATEGORIES

FIXTURES = paths.REPO_ROOT / "tests" / "fixtures"
TRAIN = FIXTURES / "crisis" / "train.txt"
HELDOUT = FIXTURES / "crisis" / "heldout.txt"
HELDOUT_B = FIXTURES / "crisis" / "heldout_b.txt"  # a second held-out part, by a second author (see its header)
HELDOUT_C = FIXTURES / "crisis" / "heldout_c.txt"  # a third held-out part, by a third author (see its header)
HELDOUT_D = FIXTURES / "crisis" / "heldout_d.txt"  # a fourth, written by other authors (CoralMind; see its header)
NONE = "none"
LABELS = (NONE, *CATEGORIES)
TURN_BREAK = " || "
ORDINARY_TURN = "(ordinary) "
CRISIS_PHRASINGS = FIXTURES / "crisis_phrasings.txt"
NON_CRISIS_PHRASINGS = FIXTURES / "non_crisis_phrasings.txt"
SAD_EMOTIONS = ("sad", "devastated", "lonely", "afraid", "anxious")
# train.txt was written in rounds, each opened by a comment "# <ordinal> round ..." (the first has none): a head is
# trained on the first n, so that one trained before a round was added can be trained again.
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth")
_ROUND_HEADER = re.compile(r"#\s*(" + "|".join(ORDINALS) + r") round\b")


@dataclass(frozen=True)
class Labelled:
    label: str  # one of LABELS
    text: str  # the newest message
    history: tuple[str, ...] = ()  # the user's earlier turns, oldest first
    after_ordinary_turn: bool = False  # the newest earlier turn is marked ORDINARY_TURN

    @property
    def is_crisis(self) -> bool:
        return self.label != NONE


def _lines_by_round(path: Path) -> list[tuple[int, int, str]]:
    """(round, line number, stripped line) of every line of a labelled file."""
    if not path.is_file():
        raise FileNotFoundError(f"labelled message file {path} not found")
    out, current = [], 1
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        header = _ROUND_HEADER.match(line)
        if header:
            current = max(current, ORDINALS.index(header.group(1)) + 1)
        out.append((current, number, line))
    return out


def _rounds_held(lines: list[tuple[int, int, str]]) -> int:
    return lines[-1][0] if lines else 1  # a line's round never goes down


def count_rounds(path: Path) -> int:
    """How many rounds a labelled file holds."""
    return _rounds_held(_lines_by_round(path))


def read_labelled(path: Path, rounds: int | None = None) -> list[Labelled]:
    """The labelled messages of a file in the format above; comments (#) and blank lines are skipped. With
    `rounds`, only the lines of the file's first `rounds` rounds (see ORDINALS)."""
    lines = _lines_by_round(path)
    held = _rounds_held(lines)
    if rounds is not None and not 1 <= rounds <= held:
        raise ValueError(f"{path} holds {held} rounds: rounds must be 1 to that, got {rounds}")
    rows = []
    for round_, number, line in lines:
        if not line or line.startswith("#") or (rounds is not None and round_ > rounds):
            continue
        label, sep, rest = line.partition(" | ")
        if not sep or label not in LABELS or not rest.strip():
            raise ValueError(f"{path}:{number}: expected 'label | message' with a label in {LABELS}, got {line!r}")
        *earlier, text = [part.strip() for part in rest.split(TURN_BREAK)]
        after_ordinary = bool(earlier) and earlier[-1].startswith(ORDINARY_TURN)
        earlier = [turn.removeprefix(ORDINARY_TURN).strip() for turn in earlier]
        rows.append(Labelled(label, text, tuple(earlier), after_ordinary))
    return rows


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"phrasing list {path} not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def read_crisis_phrasings(path: Path = CRISIS_PHRASINGS) -> list[tuple[str, str]]:
    """(category, message) pairs from lines "category | message"."""
    pairs = []
    for line in _lines(path):
        category, sep, text = line.partition(" | ")
        if not sep or category not in CATEGORIES:
            raise ValueError(f"{path}: expected 'category | message' with a category in {CATEGORIES}, got {line!r}")
        pairs.append((category, text.strip()))
    return pairs


def read_non_crisis_phrasings(path: Path = NON_CRISIS_PHRASINGS) -> list[str]:
    return _lines(path)


@dataclass(frozen=True)
class Prompt:
    source: str  # "empatheticdialogues" or "dailydialog"
    text: str
    emotion: str = ""  # EmpatheticDialogues' emotion label of the conversation ("" for DailyDialog)


# The split's name in each dataset's own layout.
SPLITS = {"train": ("train", "train"), "validation": ("valid", "validation"), "test": ("test", "test")}


def real_prompts(data_dir: str | os.PathLike | None = None, split: str = "test") -> list[Prompt]:
    """Every utterance of the EmpatheticDialogues and DailyDialog `split` (train, validation or test)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    ed_split, dd_split = SPLITS[split]
    root = paths.data_dir(data_dir)
    ed_file = root / "empatheticdialogues" / f"{ed_split}.csv"
    dd_file = root / "dailydialog" / dd_split / f"dialogues_{dd_split}.txt"
    for file in (ed_file, dd_file):
        if not file.is_file():
            raise FileNotFoundError(f"{split} split {file} not found (set ${paths.DATA_ENV} or pass the data "
                                    f"directory)")
    ed = pd.read_csv(ed_file, keep_default_na=False)
    dd = [u.strip() for line in dd_file.read_text(encoding="utf-8").splitlines() for u in line.split("__eou__")]
    return ([Prompt("empatheticdialogues", u, e) for u, e in zip(ed["utterance"], ed["context"]) if u.strip()]
            + [Prompt("dailydialog", u) for u in dd if u])
