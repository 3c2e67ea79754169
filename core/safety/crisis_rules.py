"""The crisis rule table: what a rule is, and the table itself, read from data/crisis_rules.toml at import.

The table is data, kept apart from the matcher (core/safety/crisis.py) so that it reads as a list of phrases with
a comment each: a rule is a category, a name, a regular expression written against `crisis.normalise`d text, a
weight (strong rules decide alone, weak ones need a second signal) and optionally the figurative or accidental
reading that sets a match aside. The file's header says how it is written. The guard (guard.py) builds its own
small table of reply rules with `phrase`, and takes the one list of drug names from here (`DRUGS`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

RULES_FILE = Path(__file__).resolve().parent / "data" / "crisis_rules.toml"
CATEGORIES = ("suicide", "self_harm", "abuse", "danger")
SUICIDE, SELF_HARM, ABUSE, DANGER = CATEGORIES
STRONG, WEAK = 1.0, 0.5
_FRAGMENT = re.compile(r"\{([A-Z][A-Z_]*)\}")  # {NAME}; a regex count such as {0,4} is never upper-case letters
_KEYS = {"category", "name", "pattern", "weak", "unless", "past_ok"}


@dataclass(frozen=True)
class Rule:
    category: str
    name: str
    pattern: re.Pattern
    weight: float = STRONG
    unless: re.Pattern | None = None  # a figurative or accidental reading, looked for in the whole sentence
    past_ok: bool = False  # still a crisis when told as a past event (abuse disclosures)


def phrase(category: str, name: str, pattern: str, weight: float = STRONG, unless: str | None = None,
           past_ok: bool = False) -> Rule:
    """A rule from regex source written against `normalise`d text."""
    return Rule(category, name, re.compile(pattern), weight, re.compile(unless) if unless else None, past_ok)


def _joined(value: object, where: str) -> str:
    """A pattern as the file writes it: one string, or a list of strings joined with nothing between them."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return "".join(value)
    raise ValueError(f"{where}: expected a string or a list of strings, got {value!r}")


def _expanded(source: str, fragments: dict[str, str], where: str) -> str:
    def fragment(match: re.Match) -> str:
        if match.group(1) not in fragments:
            raise ValueError(f"{where}: no fragment {match.group(1)} in [fragments]")
        return fragments[match.group(1)]

    return _FRAGMENT.sub(fragment, source)


def load_rules(path: Path = RULES_FILE) -> tuple[dict[str, str], tuple[Rule, ...]]:
    """The fragments and the rules of a rule file; ValueError naming the rule when one is malformed."""
    with open(path, "rb") as file:
        table = tomllib.load(file)
    fragments = {name: _joined(value, f"{path.name} fragment {name}")
                 for name, value in table.get("fragments", {}).items()}
    rules, seen = [], set()
    for number, row in enumerate(table.get("rule", []), 1):
        where = f"{path.name} rule {number} ({row.get('name', '?')})"
        if set(row) - _KEYS or not {"category", "name", "pattern"} <= set(row):
            raise ValueError(f"{where}: expected keys {sorted(_KEYS)} with category, name and pattern, got "
                             f"{sorted(row)}")
        if row["category"] not in CATEGORIES or (row["category"], row["name"]) in seen:
            raise ValueError(f"{where}: category must be one of {CATEGORIES} and names unique in their category")
        seen.add((row["category"], row["name"]))
        unless = _expanded(_joined(row["unless"], where), fragments, where) if "unless" in row else None
        try:
            rules.append(phrase(row["category"], row["name"], _expanded(_joined(row["pattern"], where), fragments,
                                                                        where),
                                WEAK if row.get("weak") else STRONG, unless, bool(row.get("past_ok"))))
        except re.error as error:
            raise ValueError(f"{where}: {error}") from error
    return fragments, tuple(rules)


FRAGMENTS, RULES = load_rules()
# The one list of drug names, for the crisis rules ("took a whole bottle of pills") and the guard's ("stop taking
# your meds").
DRUGS = FRAGMENTS["DRUGS"]
