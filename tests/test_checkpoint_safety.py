"""Safety wired in: every saved model directory carries checksums.json, `load_responder` refuses pickle, truncated
or tampered weights before any library opens them, and `python -m core bench safety` prints the crisis figures."""

from __future__ import annotations

import json

import pytest
import torch

from core.engine.checkpoint import export_model
from core.models.discriminator import Discriminator, DiscriminatorConfig
from core.models.emotion import EmotionClassifier, EmotionConfig
from core.models.encoder import EncoderConfig
from core.models.card import ModelCard
from core.registry import load_responder
from core.safety import CheckpointError, check_checkpoint_dir
from engine_fixtures import tiny_generator, toy_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture
def exported(tmp_path, tokenizer):
    card = ModelCard(name="toy", algorithm="mle", data="toy", steps=1)
    return export_model(tiny_generator(tokenizer), tokenizer, card, tmp_path / "toy")


def _listing(directory):
    return json.loads((directory / "checksums.json").read_text())


def test_export_lists_every_weight_file_and_loads(exported):
    assert set(_listing(exported)) == {p.name for p in exported.glob("*.safetensors")} == {"model.safetensors"}
    assert load_responder(exported).card.name == "toy"


def test_one_tampered_byte_is_refused_naming_the_file(exported):
    weights = exported / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a tensor byte: header and length still parse, only the SHA-256 can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match its SHA-256"):
        load_responder(exported)


def test_a_pickle_beside_the_weights_is_refused(exported):
    torch.save({"w": torch.zeros(1)}, exported / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickle weight files \(pytorch_model\.bin\)"):
        load_responder(exported)


def test_a_truncated_file_is_refused(exported):
    weights = exported / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a valid safetensors file"):
        load_responder(exported)


def test_a_path_outside_the_allowed_roots_is_refused(exported, tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(CheckpointError, match="outside the allowed directories"):
        load_responder(exported, allowed_roots=[tmp_path / "models"])


def _encoder(tokenizer_dir):
    return EncoderConfig(name_or_path="scratch", tokenizer=str(tokenizer_dir), n_layer=1, n_embd=32, n_head=2,
                         max_length=32)


def test_emotion_model_and_discriminator_directories_carry_checksums(tmp_path, tokenizer, exported):
    tokenizer.save_pretrained(tmp_path / "tok")
    emotion = EmotionClassifier(EmotionConfig(encoder=_encoder(tmp_path / "tok"), head_hidden=8))
    saved = emotion.save_pretrained(tmp_path / "emotion")
    assert set(_listing(saved)) == {"model.safetensors"} and check_checkpoint_dir(saved, [tmp_path])

    config = DiscriminatorConfig(encoder=_encoder(tmp_path / "tok"), head_hidden=8, use_emotion_features=True,
                                 emotion_model=str(saved))
    discriminator = Discriminator(config)  # its emotion model is saved in a subfolder, after its own weights
    # As train_gail writes a GAIL model: the generator and its discriminator in one atomic step, one listing for all.
    card = ModelCard(name="toy", algorithm="empathygail", data="toy", steps=1)
    exported = export_model(tiny_generator(tokenizer), tokenizer, card, exported,
                            extras=lambda directory: discriminator.save_pretrained(directory / "discriminator"))
    assert set(_listing(exported / "discriminator")) == {"model.safetensors", "emotion/model.safetensors"}
    assert set(_listing(exported)) == {"model.safetensors", "discriminator/model.safetensors",
                                       "discriminator/emotion/model.safetensors"}
    assert load_responder(exported).card.name == "toy"

    (exported / "discriminator" / "emotion" / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match=r"discriminator/emotion/model\.safetensors"):
        load_responder(exported)


def test_bench_safety_prints_the_crisis_figures(tmp_path, capsys):
    from core.__main__ import main

    status = main(["bench", "safety", "--data-dir", str(tmp_path)])  # no real data here: the written lists only
    out = capsys.readouterr().out
    assert "rule table on the lists it was written against: recall" in out and "hard negatives flagged" in out
    assert "held-out (heldout.txt" in out and "real test data not found" in out
    assert all(f"  {layer} " in out for layer in ("rules", "semantic", "both"))
    assert ("PASS" in out) == (status == 0) and ("FAIL" in out) == (status == 1)
