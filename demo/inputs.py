"""What visitors type, made safe to feed a model: printable text, a bounded length, and a note saying what changed."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

_DROP = {"Cc", "Cf", "Cs", "Co", "Cn"}  # control, format, lone surrogates, private use, unassigned
_SPACES = "\t\n\r"  # control characters that are only whitespace


@dataclass
class CleanText:
    text: str
    notes: list[str] = field(default_factory=list)  # what was changed, in words a visitor understands


def clean_text(value: Any, max_chars: int) -> CleanText:
    """Normalise Unicode (NFKC), drop invisible and control characters, collapse whitespace, and keep the last
    `max_chars` characters: the model itself keeps the end of a prompt too long for its context."""
    if value is None:
        return CleanText("")
    if not isinstance(value, str):
        return CleanText("", [f"expected text, got {type(value).__name__}"])
    notes = []
    visible = "".join(c for c in value if c in _SPACES or unicodedata.category(c) not in _DROP)
    if len(visible) < len(value):
        notes.append("invisible or control characters were removed")
    text = unicodedata.normalize("NFKC", visible)
    kept = "".join(c for c in text if c in _SPACES or unicodedata.category(c) not in _DROP)
    kept = " ".join(kept.split())
    if len(kept) > max_chars:
        notes.append(f"your message had {len(value):,} characters; the model reads only the last {max_chars:,}")
        kept = kept[-max_chars:].lstrip()
    return CleanText(kept, notes)


def clamp(value: Any, default: float, low: float, high: float) -> float:
    """A number from a form or API call, held to [low, high]; `default` when it is not a number (or NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return min(max(value, low), high) if value == value else default


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or Gradio 6's list of blocks ({"type": "text", ...}).

    Walked with an explicit stack, so content nested thousands of lists deep cannot exhaust Python's recursion."""
    texts, stack = [], [content]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            if item.get("type", "text") == "text":
                texts.append(str(item.get("text") or item.get("value") or ""))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
    return " ".join(t for t in texts if t)


def mostly_latin(text: str) -> bool:
    """Whether most letters are Latin script: the models read English, and a message in a script they never saw
    (Chinese, Arabic, Cyrillic, ...) would get an unrelated reply. Other languages written in Latin letters pass."""
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return not letters or latin >= len(letters) / 2
