"""A tiny but real world for the app's tests: GPT-2 models of 2 layers (gibberish, but the real loading and
generation path), an emotion classifier and a discriminator with small scratch encoders, saved generations and
an evaluation report, all written into a temporary directory."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from core.models.generator import GeneratorConfig, build_generator
from core.registry import ModelCard
from core.text import train_tokenizer

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
    """checkpoints/ (three tiny models, an emotion classifier, a discriminator beside EmpathyGAIL), results/,
    an empty work dir, and a data dir with a toy trajectory set."""
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
