"""DailyDialog (Li et al., 2017): the official split files, one dialogue per line, utterances ending in `__eou__`.

`dailydialog/<folder>/dialogues_<folder>.txt` with `dialogues_emotion_<folder>.txt` and `dialogues_act_<folder>.txt`
(one integer per utterance, same line). Speakers alternate A, B. Known quirks of the release are kept and
reported, not dropped: a train dialogue with one label fewer than turns (its last turn is labelled ""), and
dialogues repeated within a split or across splits.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from itertools import zip_longest
from pathlib import Path

from core.data.records import Conversation, ReadReport, Utterance, badly_encoded, open_text, require_file

SOURCE = "dailydialog"
FOLDER = "dailydialog"
SPLIT_FOLDERS = {"train": "train", "valid": "validation", "test": "test"}
DD_EMOTIONS = ("no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
DD_ACTS = ("", "inform", "question", "directive", "commissive")  # 0 is unused by the release
LAYOUT = (
    f"  {FOLDER}/train/dialogues_train.txt, dialogues_emotion_train.txt, dialogues_act_train.txt\n"
    f"  {FOLDER}/validation/dialogues_validation.txt, ... (same three files)\n"
    f"  {FOLDER}/test/dialogues_test.txt, ... (same three files)"
)

# Mirror of the official split zips on the Hugging Face hub; the texts are checked against the official hashes.
HUB_REPO = "roskoN/dailydialog"
TEXT_SHA256 = {
    "train": "71633bd5fdb0b09dd82215b131b56432cf7329a0fe50bc8adec168713d350d1a",
    "validation": "2ad64701fe3a4449e7a6ee7cdc6c2a71c80f77b8a34f708ac0532395f499081c",
    "test": "3c323651cdfb09f7b529f850eddf96a638fc6cc9b43330b77956ab248484a1a8",
}


def _files(data_dir: Path, folder: str) -> tuple[Path, Path, Path]:
    base = Path(data_dir) / FOLDER / folder
    return (
        base / f"dialogues_{folder}.txt",
        base / f"dialogues_emotion_{folder}.txt",
        base / f"dialogues_act_{folder}.txt",
    )


def source_files(data_dir: Path) -> list[Path]:
    return [path for folder in SPLIT_FOLDERS.values() for path in _files(data_dir, folder)]


def read_dailydialog(data_dir: Path) -> tuple[list[Conversation], ReadReport]:
    report = ReadReport(SOURCE)
    conversations: list[Conversation] = []
    train_texts: set[str] = set()
    for split, folder in SPLIT_FOLDERS.items():
        paths = [require_file(path, "DailyDialog file", LAYOUT) for path in _files(data_dir, folder)]
        read = _read_split(paths, split, folder, report, train_texts)
        if split == "train":
            train_texts = {_text_key(c) for c in read}
        conversations += read
    report.conversations = len(conversations)
    return conversations, report


def _lines(path: Path) -> list[str]:
    with open_text(path) as handle:
        return [line.rstrip("\r\n") for line in handle]


def _labels(line: str | None, names: tuple[str, ...], lowest: int) -> list[str]:
    """Label names of one label line; the ValueError's message is the skip reason."""
    tokens = (line or "").split()
    if not all(token.isascii() and token.isdigit() for token in tokens):
        raise ValueError("non-integer label")
    values = [int(token) for token in tokens]
    if not all(lowest <= value < len(names) for value in values):
        raise ValueError("label out of range")
    return [names[value] for value in values]


def _text_key(conversation: Conversation) -> str:
    return " __eou__ ".join(u.text for u in conversation.utterances)


def _read_split(paths, split: str, folder: str, report: ReadReport, train_texts: set[str]) -> list[Conversation]:
    text_lines, emotion_lines, act_lines = (_lines(path) for path in paths)
    name = paths[0].name
    conversations, seen = [], set()
    for index, (text, emotion_line, act_line) in enumerate(zip_longest(text_lines, emotion_lines, act_lines)):
        where = f"{name} line {index + 1}"
        if text is None:
            report.note("label line without a dialogue line (ignored)", where, emotion_line or act_line or "")
            continue
        report.rows_read += 1
        pieces = [piece.strip() for piece in text.split("__eou__")]
        if pieces and not pieces[-1]:
            pieces.pop()  # a dialogue line ends with __eou__
        if not pieces:
            report.skip("empty dialogue line", where)
            continue
        if badly_encoded(text, emotion_line or "", act_line or ""):
            report.skip("bad encoding (not UTF-8)", where, text)
            continue
        if not all(pieces):
            report.skip("empty utterance", where, text)
            continue
        try:
            emotions = _labels(emotion_line, DD_EMOTIONS, 0)
            acts = _labels(act_line, DD_ACTS, 1)
        except ValueError as error:
            report.skip(str(error), where, f"emotions {emotion_line!r}, acts {act_line!r}")
            continue
        for kind, labels in (("emotion", emotions), ("act", acts)):
            if len(labels) < len(pieces):
                report.note(f"utterances without an {kind} label (kept, labelled \"\")", where, text,
                            count=len(pieces) - len(labels))
            elif len(labels) > len(pieces):
                report.note(f"{kind} labels beyond the last utterance (dropped)", where, text,
                            count=len(labels) - len(pieces))
        emotions = (emotions + [""] * len(pieces))[: len(pieces)]
        acts = (acts + [""] * len(pieces))[: len(pieces)]
        utterances = [Utterance("AB"[i % 2], piece, emotions[i]) for i, piece in enumerate(pieces)]
        conversation = Conversation(SOURCE, split, f"{folder}:{index}", utterances, acts=acts)
        key = _text_key(conversation)
        if key in seen:
            report.note(f"dialogue repeated within {folder} (kept)", where, pieces[0])
        if key in train_texts:
            report.note(f"{folder} dialogue also in train (kept)", where, pieces[0])
        seen.add(key)
        conversations.append(conversation)
    return conversations


def download(dest: Path) -> Path:
    """Fetch the official split files into `dest/dailydialog/` from the hub mirror (skipped when present)."""
    from huggingface_hub import hf_hub_download

    target = Path(dest) / FOLDER
    if all(path.is_file() for path in source_files(dest)):
        return target
    for folder, expected in TEXT_SHA256.items():
        archive_path = hf_hub_download(HUB_REPO, f"{folder}.zip", repo_type="dataset")
        with zipfile.ZipFile(archive_path) as archive:
            text = archive.read(f"{folder}/dialogues_{folder}.txt")
            digest = hashlib.sha256(text).hexdigest()
            if digest != expected:
                raise ValueError(f"{HUB_REPO}/{folder}.zip: dialogues sha256 {digest}, expected {expected}")
            (target / folder).mkdir(parents=True, exist_ok=True)
            for path in _files(dest, folder):
                with archive.open(f"{folder}/{path.name}") as source, open(path, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    return target
