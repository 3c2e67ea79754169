"""Tiny data directories in every format the readers accept, written into a test's tmp_path.

The clean conversations are constants so that tests can state the exact trajectories they expect; the broken rows
each file adds are listed beside the report counts they must produce.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

# conv_id -> (emotion, situation, utterances); utterances alternate speaker, listener, ...
ED = {
    "train": {
        "hit:0_conv:1": ("sentimental", "My dog, Rex, died.", [
            "My dog died, sadly.", "Oh no, I am so sorry.", "Thanks. He was old.", "Was he with you long?",
            "Twelve years.",
        ]),
        "hit:0_conv:2": ("joyful", "I got a job.", ["I got the job!", "Congratulations!"]),
    },
    "valid": {"hit:1_conv:3": ("afraid", "A noise at night.", ["I heard a noise.", "What was it?", "A cat."])},
    "test": {"hit:1_conv:4": ("proud", "My son graduated.", ["My son graduated, finally.", "You must be proud."])},
}  # fmt: skip

# Broken rows added to ED train, in either dialect: reason -> count in the ReadReport.
ED_SKIPS = {
    "wrong column count": 1,
    "non-integer utterance_idx": 1,
    "empty utterance": 1,
    "bad encoding (not UTF-8)": 1,
}

DD = {
    "train": [
        (["Hi , Tom .", "Hello , Ann .", "How are you ?", "Fine , thanks ."], [0, 0, 4, 4], [2, 2, 2, 1]),
        (["Can we stop ?", "Why ?", "I need a bike ."], [0, 6], [2, 2]),  # one label short: last turn unlabelled
        (["Hi , Tom .", "Hello , Ann .", "How are you ?", "Fine , thanks ."], [0, 0, 4, 4], [2, 2, 2, 1]),  # repeat
    ],
    "validation": [(["Hi , Tom .", "Hello , Ann .", "How are you ?", "Fine , thanks ."], [0, 0, 4, 4], [2, 2, 2, 1])],
    "test": [(["I lost my keys .", "Oh no !"], [5, 6], [1, 1])],
}
# Broken dialogues added to DD train (raw text line, emotion line, act line).
DD_BROKEN = [
    ("Where are you ? __eou__ Here . __eou__", "0 x", "2 1"),  # non-integer label
    ("Where are you ? __eou__ Here . __eou__", "0 9", "2 1"),  # label out of range
    ("Where are you ? __eou__  __eou__ Here . __eou__", "0 0 0", "2 1 1"),  # empty utterance
]
DD_SKIPS = {"non-integer label": 1, "label out of range": 1, "empty utterance": 1}

QUOTES = ["Keep going.", "This too shall pass.", "Be kind to yourself.", "One step at a time.", "You are enough."]
QUOTE_SKIPS = {"invalid JSON": 1, "no text": 1}

REFRAMES = {
    "train": [("I hate Mondays.", "A new week is a fresh start."), ("So much work, ugh.", "Busy means I matter.")],
    "valid": [("Exams again...", "I get to show what I learned.")],
    "test": [("Stuck in traffic.", "Time for a podcast.")],
}
REFRAME_SKIPS = {"wrong column count": 1, "empty text": 1}
REFRAME_FILES = {"train": "wholetrain.csv", "valid": "wholedev.csv", "test": "wholetest.csv"}


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_ed_shared(root: Path) -> None:
    """The shared copy's dialect: RFC-4180 CSV, real commas, speaker_role."""
    folder = root / "empatheticdialogues"
    folder.mkdir(parents=True, exist_ok=True)
    for split, conversations in ED.items():
        rows = [["conv_id", "utterance_idx", "context", "prompt", "speaker_role", "utterance"]]
        for conv_id, (emotion, situation, utterances) in conversations.items():
            for i, text in enumerate(utterances, start=1):
                rows.append([conv_id, str(i), emotion, situation, "speaker" if i % 2 else "listener", text])
        data = _csv_text(rows).encode()
        if split == "train":
            data += _csv_text([
                ["hit:9_conv:9", "1", "sad", "too few columns"],
                ["hit:9_conv:9", "one", "sad", "situation", "speaker", "index is not a number"],
                ["hit:9_conv:9", "2", "sad", "situation", "listener", ""],
            ]).encode()
            data += b"hit:9_conv:9,3,sad,situation,speaker,caf\xe9 in latin-1\n"
        (folder / f"{split}.csv").write_bytes(data)


def write_ed_official(root: Path) -> None:
    """The official release's dialect: no quoting, `_comma_`, speaker_idx, selfeval, tags (+ candidates)."""
    folder = root / "empatheticdialogues"
    folder.mkdir(parents=True, exist_ok=True)
    for split, conversations in ED.items():
        lines = ["conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags"]
        for conv_id, (emotion, situation, utterances) in conversations.items():
            for i, text in enumerate(utterances, start=1):
                worker = "100" if i % 2 else "200"
                fields = [conv_id, str(i), emotion, situation, worker, text, "5|5|5_2|2|5", ""]
                if split == "test":
                    fields.append("cand one|cand_comma_ two")  # the 9th field some official rows carry
                lines.append(",".join(field.replace(",", "_comma_") for field in fields))
        data = ("\n".join(lines) + "\n").encode()
        if split == "train":
            data += (
                b"hit:9_conv:9,1,sad,an extra, comma,100,text,5|5|5_2|2|5,,,\n"
                b"hit:9_conv:9,x,sad,situation,100,index is not a number,5|5|5_2|2|5,\n"
                b"hit:9_conv:9,2,sad,situation,200,,5|5|5_2|2|5,\n"
                b"hit:9_conv:9,3,sad,situation,100,caf\xe9 in latin-1,5|5|5_2|2|5,\n"
            )
        (folder / f"{split}.csv").write_bytes(data)


def write_dd(root: Path) -> None:
    for folder, dialogues in DD.items():
        base = root / "dailydialog" / folder
        base.mkdir(parents=True, exist_ok=True)
        texts = ["".join(f"{u} __eou__" for u in utterances) for utterances, _, _ in dialogues]
        emotions = [" ".join(map(str, labels)) for _, labels, _ in dialogues]
        acts = [" ".join(map(str, labels)) for _, _, labels in dialogues]
        if folder == "train":
            texts += [text for text, _, _ in DD_BROKEN]
            emotions += [line for _, line, _ in DD_BROKEN]
            acts += [line for _, _, line in DD_BROKEN]
        for name, lines in ((f"dialogues_{folder}.txt", texts), (f"dialogues_emotion_{folder}.txt", emotions),
                            (f"dialogues_act_{folder}.txt", acts)):  # fmt: skip
            (base / name).write_text("\n".join(lines) + "\n")


def write_uplifting(root: Path) -> None:
    folder = root / "uplifting_texts"
    (folder / "positive_psychology_frames").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": text, "author": "Someone", "sources": ["x/y"]}) for text in QUOTES]
    lines += ["{not json", json.dumps({"author": "No Text"}), ""]
    (folder / "quotes_merged.jsonl").write_text("\n".join(lines) + "\n")
    header = ["", "original_text", "reframed_text", "strategy"]
    for split, pairs in REFRAMES.items():
        rows = [header] + [[str(i), tweet, reframe, "['optimism']"] for i, (tweet, reframe) in enumerate(pairs)]
        if split == "train":
            rows += [["7", "only two"], ["8", "", "reframe of nothing", "[]"]]
        (folder / "positive_psychology_frames" / REFRAME_FILES[split]).write_text(_csv_text(rows))


def write_data_dir(root: Path, ed_format: str = "shared") -> Path:
    """A complete tiny data directory laid out like ../shared/data; returns it."""
    (write_ed_shared if ed_format == "shared" else write_ed_official)(root)
    write_dd(root)
    write_uplifting(root)
    return root
