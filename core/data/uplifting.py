"""Stand-ins for the paper's uplifting tweets (which are not public), under `uplifting_texts/`.

- quotes: `quotes_merged.jsonl`, one `{"text", "author", ...}` per line; each quote is a one-utterance
  "conversation" with no official split.
- reframes: Positive Psychology Frames (Ziems et al., 2022), `positive_psychology_frames/whole{train,dev,test}.csv`;
  each row is a two-utterance conversation: a stressed tweet (`original_text`) and its positive reframe.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from core.data.records import Conversation, ReadReport, Utterance, badly_encoded, open_text, require_file

FOLDER = "uplifting_texts"
QUOTES_FILE = "quotes_merged.jsonl"
REFRAMES_FOLDER = "positive_psychology_frames"
REFRAME_FILES = {"train": "wholetrain.csv", "valid": "wholedev.csv", "test": "wholetest.csv"}
REFRAME_SPEAKERS = ("poster", "reframer")
LAYOUT = (
    f"  {FOLDER}/{QUOTES_FILE} (JSON lines with a \"text\" field)\n"
    f"  {FOLDER}/{REFRAMES_FOLDER}/wholetrain.csv, wholedev.csv, wholetest.csv (columns original_text, reframed_text)"
)


def quote_files(data_dir: Path) -> list[Path]:
    return [Path(data_dir) / FOLDER / QUOTES_FILE]


def reframe_files(data_dir: Path) -> list[Path]:
    return [Path(data_dir) / FOLDER / REFRAMES_FOLDER / name for name in REFRAME_FILES.values()]


def read_quotes(data_dir: Path) -> tuple[list[Conversation], ReadReport]:
    report = ReadReport("quotes")
    path = require_file(quote_files(data_dir)[0], "quotes file", LAYOUT)
    conversations = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            report.rows_read += 1
            where = f"{path.name} line {number}"
            if badly_encoded(line):
                report.skip("bad encoding (not UTF-8)", where, line)
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                report.skip("invalid JSON", where, line)
                continue
            text = item.get("text") if isinstance(item, dict) else None
            if not isinstance(text, str) or not text.strip():
                report.skip("no text", where, line)
                continue
            utterance = Utterance("", text.strip())
            conversations.append(Conversation("quotes", "", f"quotes:{number}", [utterance]))
    report.conversations = len(conversations)
    return conversations, report


def read_reframes(data_dir: Path) -> tuple[list[Conversation], ReadReport]:
    report = ReadReport("reframes")
    conversations = []
    for split, name in REFRAME_FILES.items():
        path = require_file(Path(data_dir) / FOLDER / REFRAMES_FOLDER / name, "reframes file", LAYOUT)
        with open_text(path) as handle:
            rows = csv.reader(handle)
            header = next(rows, [])
            if "original_text" not in header or "reframed_text" not in header:
                raise ValueError(f"{path}: header {header} lacks original_text and reframed_text")
            original, reframed = header.index("original_text"), header.index("reframed_text")
            for number, fields in enumerate(rows, start=1):
                report.rows_read += 1
                where = f"{name} data row {number}"
                if len(fields) != len(header):
                    report.skip("wrong column count", where, ",".join(fields))
                    continue
                prompt, response = fields[original].strip(), fields[reframed].strip()
                if badly_encoded(prompt, response):
                    report.skip("bad encoding (not UTF-8)", where, prompt)
                elif not prompt or not response:
                    report.skip("empty text", where, ",".join(fields))
                else:
                    utterances = [Utterance(REFRAME_SPEAKERS[0], prompt), Utterance(REFRAME_SPEAKERS[1], response)]
                    conversations.append(Conversation("reframes", split, f"{split}:{number}", utterances))
    report.conversations = len(conversations)
    return conversations, report
