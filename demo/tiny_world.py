"""The app's tiny world: the datasets in miniature in their real formats, and tiny models built in seconds, for the
load bench (demo/bench_load.py), the fuzzer (scripts/fuzz.py) and the tests.

Models: GPT-2 models of 2 layers (gibberish, but the real loading and generation path), an emotion classifier and a
discriminator with small scratch encoders, saved generations and an evaluation report (`build_world`). Data: a
complete data directory laid out like ../shared/data, in every format the readers accept (`write_data_dir`); its
clean conversations are constants so that tests can state the exact trajectories they expect, and each file adds a
few broken rows that the readers must skip (the tests hold the counts they must report).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from core.models.card import ModelCard
from core.models.generator import GeneratorConfig, build_generator
from core.text import train_tokenizer

# --- the data, in its real formats -------------------------------------------------------------------------

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

QUOTES = ["Keep going.", "This too shall pass.", "Be kind to yourself.", "One step at a time.", "You are enough."]

REFRAMES = {
    "train": [("I hate Mondays.", "A new week is a fresh start."), ("So much work, ugh.", "Busy means I matter.")],
    "valid": [("Exams again...", "I get to show what I learned.")],
    "test": [("Stuck in traffic.", "Time for a podcast.")],
}
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


# --- the models --------------------------------------------------------------------------------------------

TEXTS = [
    "I lost my job today.", "I am so sorry to hear that.", "My dog died last week.", "I am so sorry for your loss.",
    "I passed my exam!", "That is wonderful, congratulations!", "I got a new puppy.", "What is its name?",
    "My car broke down again.", "Oh no, that sounds so frustrating.", "I am nervous about my interview.",
    "You will do great, just be yourself.", "Hi there.", "Hello, how are you?",
]
TINY = GeneratorConfig(n_layer=2, n_embd=32, n_head=2, n_positions=96, dropout=0.0)
MODELS = [("EmpathyGAIL", "empathygail"), ("MLE", "mle"), ("TextGAIL", "textgail")]


def tokenizer():
    return train_tokenizer(TEXTS * 4, vocab_size=300, min_frequency=1)


def save_generator(directory: Path, name: str, algorithm: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok = tokenizer()
    model = build_generator(TINY, tok)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    ModelCard(name=name, algorithm=algorithm, data="tiny test texts", steps=0).save(directory)
    return directory


def scratch_encoder(tokenizer_dir: Path, max_length: int = 64):
    """A 1-layer BERT over the tiny BPE (its own tokenizer, so nothing is fetched or downloaded)."""
    from core.models.encoder import EncoderConfig

    return EncoderConfig(name_or_path="scratch", tokenizer=str(tokenizer_dir), n_layer=1, n_embd=32, n_head=2,
                         max_length=max_length, max_reply_tokens=24)


def save_emotion(directory: Path, tokenizer_dir: Path) -> Path:
    from core.models.emotion import EmotionClassifier, EmotionConfig

    torch.manual_seed(0)
    config = EmotionConfig(encoder=scratch_encoder(tokenizer_dir), head_hidden=16)
    return EmotionClassifier(config).save_pretrained(directory)


def save_discriminator(directory: Path, tokenizer_dir: Path) -> Path:
    from core.models.discriminator import Discriminator, DiscriminatorConfig

    torch.manual_seed(0)
    config = DiscriminatorConfig(encoder=scratch_encoder(tokenizer_dir, 128), head_hidden=16)
    return Discriminator(config).save_pretrained(directory)


def save_results(directory: Path, model_names: list[str]) -> Path:
    """generations.jsonl as `evaluate` writes it, and the report files, from a few fixed rows."""
    from core.scoring import evaluate, report

    rows = [("empatheticdialogues", "1", "sad", [], "My dog died last week.", "I am so sorry for your loss."),
            ("empatheticdialogues", "2", "joyful", ["Hi there.", "Hello, how are you?"], "I passed my exam!",
             "That is wonderful, congratulations!"),
            ("dailydialog", "3+", "happiness", ["Hi there.", "Hello.", "How are you?", "Fine."],
             "I got a new puppy.", "What is its name?")]
    records = [{"index": i, "source": s, "conv_id": f"c{i}", "turn": len(h) // 2, "bucket": b, "emotion": e,
                "history": h, "prompt": p, "expert": r, "replies": {m: [f"{m} says hi {i}"] for m in model_names},
                "expert_score": {m: {"logprob": -10.0 - i, "n_tokens": 5, "n_words": 4} for m in model_names}}
               for i, (s, b, e, h, p, r) in enumerate(rows)]
    meta = {"split": "test", "sources": ["empatheticdialogues", "dailydialog"], "examples": len(records),
            "seeds": [0], "decoding": {}, "batch_size": 4, "device": "cpu", "generation_s": 0.1, "notes": [],
            "models": [{"name": m, "path": "", "algorithm": m.lower()} for m in model_names]}
    directory.mkdir(parents=True, exist_ok=True)
    evaluate.write_generations(directory, records, meta)
    config = evaluate.EvalConfig(out=str(directory), rescore=True, embedding=False)
    report.write_report(evaluate.evaluate(config), directory)
    return directory


def build_world(root: Path, with_extras: bool = True) -> dict[str, Path]:
    """checkpoints/ (three tiny models, an emotion classifier, a discriminator beside EmpathyGAIL) and results/
    under `root`; with them the paths for a work dir and a data dir (`write_data_dir` writes the data there)."""
    checkpoints = root / "checkpoints"
    for i, (name, algorithm) in enumerate(MODELS):
        save_generator(checkpoints / algorithm, name, algorithm, seed=i)
    if with_extras:
        tokenizer_dir = checkpoints / "mle"  # any tiny model's folder holds the tokenizer
        save_emotion(checkpoints / "emotion", tokenizer_dir)
        save_discriminator(checkpoints / "empathygail" / "discriminator", tokenizer_dir)
        save_results(root / "results", [name for name, _ in MODELS])
    return {"checkpoints": checkpoints, "results": root / "results", "work": root / "work", "data": root / "data",
            "root": root}
