"""What ships in checkpoints/: every model loads through the registry, answers, and its card matches its files."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core import paths
from core.models.emotion import EmotionClassifier
from core.models.generator import Decoding
from core.registry import list_models, load_responder

SHIPPED = paths.REPO_ROOT / "checkpoints"
CARDS = list_models(SHIPPED)


def test_the_pipeline_models_ship():
    assert {card.algorithm for card in CARDS} == {"pretrain", "mle", "rl_seq2seq", "textgail", "empathygail"}


@pytest.mark.parametrize("card", CARDS, ids=[card.name for card in CARDS])
def test_a_shipped_model_loads_answers_and_matches_its_card(card):
    folder = Path(card.path)
    listed = set(json.loads((folder / "checksums.json").read_text()))
    assert listed == {str(p.relative_to(folder)) for p in folder.rglob("*.safetensors")}
    assert all(p.stat().st_size <= 16 * 2**20 for p in folder.rglob("*") if p.is_file())
    stored = {t.dtype for f in folder.glob("*.safetensors") for t in load_file(str(f)).values()}
    assert stored == {getattr(torch, card.config.get("export_dtype", "float32"))}  # older cards: float32
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 64 * 2**20
    responder = load_responder(folder)
    assert responder.card.algorithm == card.algorithm and responder.card.steps == card.steps > 0
    # Greedy: a sampled reply may be empty now and then (the end token drawn first; the app's guard replaces it),
    # so a sampled check would depend on the random state earlier tests left.
    reply = responder.respond([], "I had a job interview today and I think it went really well.",
                              Decoding(do_sample=False))
    assert isinstance(reply, str) and len(reply.split()) >= 3
    (score,) = responder.score_batch([([], "My dog died last week.")], ["I am so sorry for your loss."])
    assert score.n_tokens > 0 and score.perplexity < 10_000


def test_the_shipped_emotion_model_reads_emotions():
    model = EmotionClassifier.from_pretrained(SHIPPED / "emotion")
    sad, joyful = model.predict(["My dog died last week and I miss him so much.", "I won the lottery today!"])
    assert sad != joyful
