"""The emotion classifier: trains on labelled trajectories, predicts distributions over ED's 32 emotions,
round-trips through save/load; the reply-emotion prior and emotion fit by hand."""

import json

import pytest
import torch
from datasets import Dataset, DatasetDict

from core.engine.callbacks import read_metrics
from core.engine.emotion import EmotionTrainConfig, labelled_texts, train_emotion
from core.models.emotion import EmotionClassifier, EmotionConfig, emotion_fit, reply_emotion_prior
from core.models.encoder import EncoderConfig
from engine_fixtures import toy_tokenizer

HAPPY = ["I passed my exam!", "I got a new puppy.", "My sister is visiting tomorrow.", "That is wonderful!"]
SAD = ["My dog died last week.", "I lost my job today.", "I could not sleep last night.", "My car broke down again."]


def _row(split, i, prompt, emotion, source="empatheticdialogues", situation=""):
    return dict(source=source, split=split, conv_id=f"{split}:{i}", turn=0, bucket="1", history=[],
                history_speakers=[], prompt_speaker="speaker", response_speaker="listener", prompt=prompt,
                response="Oh.", emotion=emotion, situation=situation)


def toy_emotions() -> DatasetDict:
    splits = {}
    for split, copies in (("train", 6), ("valid", 1), ("test", 1)):
        rows = [_row(split, f"{c}:{i}", text, label) for c in range(copies)
                for i, (text, label) in enumerate([(t, "joyful") for t in HAPPY] + [(t, "sad") for t in SAD])]
        rows.append(_row(split, "dd", "Hi there.", "happiness", source="dailydialog"))  # not an ED label: skipped
        splits[split] = Dataset.from_list(rows)
    return DatasetDict(splits)


def tiny_config(tmp_path, freeze=False, tokenizer_dir=None):
    encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(tokenizer_dir), n_layer=1, n_embd=32, n_head=2,
                            max_length=32, dropout=0.0, freeze=freeze)
    return EmotionTrainConfig(model=EmotionConfig(encoder=encoder, head_hidden=32, dropout=0.0),
                              output_dir=str(tmp_path / "emotion"), run_dir=str(tmp_path / "run"), epochs=12,
                              batch_size=16, lr=1e-2)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    toy_tokenizer(directory)
    return directory


def test_labelled_texts_keep_ed_rows_and_situations_once():
    split = Dataset.from_list([_row("train", "a", "I am sad.", "sad", situation="My dog died."),
                               _row("train", "a", "He was old.", "sad", situation="My dog died.") | {"turn": 1},
                               _row("train", "b", "Hi.", "happiness", source="dailydialog")])
    texts, targets, kinds = labelled_texts(split, "ed32")
    assert texts == ["I am sad.", "My dog died.", "He was old."]
    assert kinds == ["first_turn", "situation", "later_turn"]
    assert len(set(targets)) == 1
    assert labelled_texts(split, "dd7")[0] == ["Hi."]


def test_train_emotion_learns_toy_labels_and_round_trips(tmp_path, tokenizer_dir):
    torch.manual_seed(0)
    out = train_emotion(tiny_config(tmp_path, tokenizer_dir=tokenizer_dir), dataset=toy_emotions())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"]["all"] == 1.0
    model = EmotionClassifier.from_pretrained(out)
    assert model.predict(HAPPY[:2] + SAD[:2]) == ["joyful", "joyful", "sad", "sad"]
    probs = model.predict_proba(HAPPY + SAD)
    assert probs.shape == (8, 32)
    assert torch.allclose(probs.sum(-1), torch.ones(8))
    again = EmotionClassifier.from_pretrained(out).predict_proba(HAPPY + SAD)
    assert torch.equal(probs, again)


def test_a_frozen_judge_remembers_what_it_read(tmp_path, tokenizer_dir):
    config = tiny_config(tmp_path, tokenizer_dir=tokenizer_dir)
    model = EmotionClassifier(config.model)
    expected = model.predict_proba(HAPPY + SAD)
    judge = model.freeze(memo_size=6)
    assert not any(p.requires_grad for p in judge.parameters())
    # Batches of another composition pad differently: equal to a tolerance, not bit for bit (CPU kernels differ)
    torch.testing.assert_close(judge.predict_proba(HAPPY + SAD[:1]), expected[:5], rtol=1e-5, atol=1e-6)
    assert len(judge.memo) == 5
    judge.memo[HAPPY[0]] = torch.full((32,), 1 / 32)  # a remembered text is not classified again: exactly its memo
    assert torch.equal(judge.predict_proba([HAPPY[0]])[0], torch.full((32,), 1 / 32))
    torch.testing.assert_close(judge.predict_proba(SAD), expected[4:], rtol=1e-5, atol=1e-6)  # over the limit: forgets
    assert len(judge.memo) == 4 and judge.predict_proba([]).shape == (0, 32)


def test_a_frozen_encoder_trains_only_the_head(tmp_path, tokenizer_dir):
    config = tiny_config(tmp_path, freeze=True, tokenizer_dir=tokenizer_dir)
    config.epochs = 3
    torch.manual_seed(0)
    before = EmotionClassifier(config.model).encoder.state_dict()
    torch.manual_seed(0)
    model = EmotionClassifier.from_pretrained(train_emotion(config, dataset=toy_emotions()))
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_reply_emotion_prior_and_fit_by_hand():
    prompts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    replies = torch.tensor([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    prior = reply_emotion_prior(prompts, replies, smoothing=0.0)
    assert torch.allclose(prior, torch.tensor([[0.3, 0.7], [1.0, 0.0]]))
    fit = emotion_fit(torch.tensor([[0.3, 0.7], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), prior)
    assert fit[0].item() == pytest.approx(1.0)  # exactly what experts answer to emotion 0
    assert fit[1].item() == pytest.approx(0.0, abs=1e-6)  # experts answer emotion 1 with emotion 0 only


def test_unknown_label_set_is_named():
    with pytest.raises(ValueError, match="labels 'ed64'"):
        EmotionConfig(labels="ed64")


def test_a_time_budget_ends_training_after_the_epoch_that_passes_it(tmp_path, tokenizer_dir):
    config = tiny_config(tmp_path, tokenizer_dir=tokenizer_dir)
    config.max_seconds = 1e-9
    out = train_emotion(config, dataset=toy_emotions())
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]  # one epoch, then the budget
    assert EmotionClassifier.from_pretrained(out).labels
