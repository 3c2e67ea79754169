"""EmpatheticDialogues (Rashkin et al., 2019): `empatheticdialogues/{train,valid,test}.csv`.

Two dialects, told apart by the header:
- the shared copy: RFC-4180 CSV with real commas and a `speaker_role` column (speaker/listener);
- the official release: unquoted fields, commas written `_comma_`, a `speaker_idx` worker id, `selfeval`, `tags`
  and, in some rows, a 9th field of label candidates.
Speaker roles follow turn parity (odd `utterance_idx` = the speaker who felt the emotion), which is how the
official data was built; in the official dialect a conversation whose `speaker_idx` does not alternate is noted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from core.data.records import Conversation, ReadReport, Utterance, badly_encoded, open_text, require_file

SOURCE = "empatheticdialogues"
FOLDER = "empatheticdialogues"
FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
LAYOUT = (
    f"  {FOLDER}/train.csv, valid.csv, test.csv\n"
    "  (header conv_id,utterance_idx,context,prompt,speaker_role|speaker_idx,utterance[,selfeval,tags])"
)
SHARED_COLUMNS = ["conv_id", "utterance_idx", "context", "prompt", "speaker_role", "utterance"]
OFFICIAL_COLUMNS = ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags"]
ROLES = ("speaker", "listener")

ED_EMOTIONS = (
    "afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive", "ashamed", "caring", "confident",
    "content", "devastated", "disappointed", "disgusted", "embarrassed", "excited", "faithful", "furious",
    "grateful", "guilty", "hopeful", "impressed", "jealous", "joyful", "lonely", "nostalgic", "prepared", "proud",
    "sad", "sentimental", "surprised", "terrified", "trusting",
)  # fmt: skip

# The release ParlAI downloads, pinned to the hash ParlAI checks.
RELEASE_URL = "http://parl.ai/downloads/empatheticdialogues/empatheticdialogues.tar.gz"
RELEASE_SHA256 = "240c492cb6199a315722f716bfcc14f13ea6605f1cec67349153b606be92f6f2"


def source_files(data_dir: Path) -> list[Path]:
    return [Path(data_dir) / FOLDER / name for name in FILES.values()]


def read_empatheticdialogues(data_dir: Path) -> tuple[list[Conversation], ReadReport]:
    report = ReadReport(SOURCE)
    conversations = []
    for split, name in FILES.items():
        path = require_file(Path(data_dir) / FOLDER / name, "EmpatheticDialogues file", LAYOUT)
        conversations += _read_file(path, split, report)
    report.conversations = len(conversations)
    return conversations, report


def _read_file(path: Path, split: str, report: ReadReport) -> list[Conversation]:
    with open_text(path) as handle:
        header_line = handle.readline()
        header = next(csv.reader([header_line]), [])
        if header[: len(SHARED_COLUMNS)] == SHARED_COLUMNS:
            return _group(_shared_rows(handle, path.name, len(header), report), split, path.name, report, True)
        if header[: len(OFFICIAL_COLUMNS)] == OFFICIAL_COLUMNS:
            return _group(_official_rows(handle, path.name, report), split, path.name, report, False)
        raise ValueError(
            f"{path}: unrecognised EmpatheticDialogues header {header_line.strip()!r}; expected "
            f"{','.join(SHARED_COLUMNS)} (shared copy) or {','.join(OFFICIAL_COLUMNS)} (official release)"
        )


def _shared_rows(handle, file_name: str, n_columns: int, report: ReadReport):
    """Yield (where, conv_id, idx, context, prompt, role, utterance) from the RFC-4180 dialect."""
    for number, fields in enumerate(csv.reader(handle), start=1):
        report.rows_read += 1
        where = f"{file_name} data row {number}"
        if len(fields) != n_columns:
            report.skip("wrong column count", where, ",".join(fields))
            continue
        conv_id, idx, context, prompt, role, utterance = (f.strip() for f in fields[:6])
        if role not in ROLES:
            report.skip("speaker_role not speaker/listener", where, role)
            continue
        yield where, conv_id, idx, context, prompt, role, utterance


def _official_rows(handle, file_name: str, report: ReadReport):
    """The official dialect is one row per line, split on bare commas (quotes are text, not CSV quoting)."""
    for number, line in enumerate(handle, start=2):
        line = line.rstrip("\r\n")
        if not line:
            continue
        report.rows_read += 1
        where = f"{file_name} line {number}"
        fields = line.split(",")
        if len(fields) not in (8, 9):  # 9: some rows carry label candidates after `tags`
            report.skip("wrong column count", where, line)
            continue
        conv_id, idx, context, prompt, worker, utterance = (
            f.replace("_comma_", ",").strip() for f in fields[:6]
        )
        yield where, conv_id, idx, context, prompt, worker, utterance


def _group(rows, split: str, file_name: str, report: ReadReport, roles_given: bool) -> list[Conversation]:
    """Collect rows by conv_id; `roles_given`: the rows carry speaker/listener, else worker ids."""
    grouped: dict[str, list[tuple[int, str, str, str, str]]] = {}
    for where, conv_id, idx, context, prompt, who, utterance in rows:
        if badly_encoded(conv_id, context, prompt, who, utterance):
            report.skip("bad encoding (not UTF-8)", where, utterance)
        elif not conv_id:
            report.skip("empty conv_id", where, utterance)
        elif not (idx.isascii() and idx.isdigit()):
            report.skip("non-integer utterance_idx", where, idx)
        elif not utterance:
            report.skip("empty utterance", where, conv_id)
        else:
            grouped.setdefault(conv_id, []).append((int(idx), context, prompt, who, utterance))
    conversations = []
    for conv_id, turns in grouped.items():
        turns.sort(key=lambda turn: turn[0])
        where = f"{file_name} {conv_id}"
        if [turn[0] for turn in turns] != list(range(1, len(turns) + 1)):
            report.note("conversation with missing or repeated utterance_idx", where, str([t[0] for t in turns]))
        context, prompt = turns[0][1], turns[0][2]
        if context not in ED_EMOTIONS:
            report.note("emotion label outside the 32", where, context)
        if roles_given:
            utterances = [Utterance(role, text) for _, _, _, role, text in turns]
        else:
            workers = [turn[3] for turn in turns]
            if any(a == b for a, b in zip(workers, workers[1:])):
                report.note("speaker_idx does not alternate (roles follow parity)", where, str(workers))
            utterances = [Utterance(ROLES[(idx - 1) % 2], text) for idx, _, _, _, text in turns]
        conversations.append(Conversation(SOURCE, split, conv_id, utterances, emotion=context, situation=prompt))
    return conversations


def download(dest: Path) -> Path:
    """Fetch the official release into `dest/empatheticdialogues/` (skipped when the files are there)."""
    target = Path(dest) / FOLDER
    Path(dest).mkdir(parents=True, exist_ok=True)
    if all(path.is_file() for path in source_files(dest)):
        return target
    with urllib.request.urlopen(RELEASE_URL, timeout=60) as response:
        payload = response.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != RELEASE_SHA256:
        raise ValueError(f"{RELEASE_URL}: sha256 {digest}, expected {RELEASE_SHA256}; not using it")
    with tempfile.TemporaryDirectory(dir=dest) as tmp, tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        archive.extractall(tmp, filter="data")
        extracted = Path(tmp) / FOLDER
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES.values():
            shutil.move(extracted / name, target / name)
    return target
