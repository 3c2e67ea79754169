"""The RL-Seq2Seq baseline: model, conditioning, MLE, PPO, reward, export through the registry, resume."""

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from core.config import load_config
from core.engine.callbacks import NonFiniteLossError, read_metrics
from core.engine.ppo import RunningMeanStd
from core.engine.rl_seq2seq import RLSeq2SeqConfig, mle_loss, optimizer_step, ppo_step, train_rl_seq2seq
from core.engine.seq2seq_reward import RewardTerms, Seq2SeqReward, unigram_f1
from core.models.emotion import EmotionClassifier, EmotionConfig
from core.models.encoder import EncoderConfig
from core.models.generator import Decoding
from core.models.seq2seq import (Seq2SeqArch, build_seq2seq, classify_contexts, collate_pairs, emotion_text,
                                 encode_pairs, generate, label_classes, target_logprobs)
from core.paths import REPO_ROOT
from core.registry import Seq2SeqResponder, load_responder
from tests.engine_fixtures import EXCHANGES, toy_tokenizer, toy_trajectories

TINY = Seq2SeqArch(d_embed=32, d_hidden=48, d_emotion=16, dropout=0.0, max_length=64)
EMOTIONS = ["sad", "joyful"]
SAD_REPLY, JOYFUL_REPLY = EXCHANGES[0][1], EXCHANGES[2][1]  # "I am so sorry ...", "That is wonderful, ..."


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small GRUs run about 10x faster on one thread than on two when other work shares the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def tiny_model(tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    return build_seq2seq(TINY, tokenizer, EMOTIONS)


def batch_of(tokenizer, model, rows):
    """rows: (history, prompt, response) -> a teacher-forcing batch."""
    pairs = encode_pairs(tokenizer, rows, max_length=model.config.max_length)
    return collate_pairs(pairs, model.config)


def tiny_emotion_model(tokenizer, directory):
    tokenizer.save_pretrained(directory / "tokenizer")
    torch.manual_seed(0)
    encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(directory / "tokenizer"), n_layer=1, n_embd=32,
                            n_head=2, max_length=32)
    model = EmotionClassifier(EmotionConfig(encoder=encoder, head_hidden=16))
    return model.save_pretrained(directory / "emotion")


def run_config(tmp_path, emotion_dir=None, **overrides) -> RLSeq2SeqConfig:
    values = dict(model=TINY, tokenizer=str(tmp_path / "tok"), emotion_model=emotion_dir,
                  output_dir=str(tmp_path / "out"), run_dir=str(tmp_path / "run"), mle_steps=6, steps=3,
                  batch_size=8, rollout_batch=8, minibatch_size=4, mle_lr=3e-3, lr=1e-3,
                  decoding=Decoding(max_new_tokens=8), eval_examples=4, log_every=1, eval_every=100,
                  checkpoint_every=100, reference_examples=16)
    return RLSeq2SeqConfig(**{**values, **overrides})


# --- Model -----------------------------------------------------------------------------------------------------

def test_emotion_class_changes_the_next_token_distribution(tokenizer):
    model = tiny_model(tokenizer).eval()
    batch = batch_of(tokenizer, model, [([], "I lost my job today.", SAD_REPLY)] * 3)
    logp = [torch.log_softmax(model(batch["src"], batch["src_mask"], torch.tensor([c] * 3), batch["tgt_in"]), -1)
            for c in (0, 1, 2)]  # sad, joyful, unknown
    assert torch.allclose(logp[0][0], logp[0][1])  # same class, same input: same distribution
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert (logp[a][0, 0] - logp[b][0, 0]).abs().max() > 1e-3  # already at the first reply token


def test_training_with_class_dependent_targets_makes_the_model_follow_the_class(tokenizer):
    """The same prompt answered sadly or joyfully depending on the gold class: after MLE the class decides."""
    model = tiny_model(tokenizer)
    prompt = "My sister is visiting tomorrow."
    rows = [([], prompt, SAD_REPLY), ([], prompt, JOYFUL_REPLY)]
    batch = batch_of(tokenizer, model, rows)
    classes = label_classes(model.config, ["sad", "joyful"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(60):
        optimizer_step(model, optimizer, mle_loss(model, batch, classes), step, max_grad_norm=1.0)
    greedy = Decoding(do_sample=False, max_new_tokens=40)
    replies = generate(model.eval(), tokenizer, [([], prompt)] * 2, classes, greedy).texts
    assert replies == [SAD_REPLY, JOYFUL_REPLY]


def test_mle_loss_decreases_on_a_toy_set(tokenizer):
    model = tiny_model(tokenizer).train()
    batch = batch_of(tokenizer, model, [(["Hi there.", "Hello, how are you?"] if i % 2 else [], p, r)
                                        for i, (p, r) in enumerate(EXCHANGES)])
    classes = torch.zeros(len(EXCHANGES), dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [optimizer_step(model, optimizer, mle_loss(model, batch, classes), step, 1.0) for step in range(30)]
    assert losses[0] > math.log(len(tokenizer)) - 1  # starts near uniform over the vocabulary
    assert losses[-1] < 0.5 * losses[0]


def test_sampling_is_batched_seeded_and_stops_at_the_end_token(tokenizer):
    model = tiny_model(tokenizer).eval()
    contexts = [([], "I passed my exam!"), (["Hi there.", "Hello, how are you?"], "I got a new puppy.")]
    classes = torch.tensor([0, 1])
    first = generate(model, tokenizer, contexts, classes, Decoding(seed=3, max_new_tokens=12))
    again = generate(model, tokenizer, contexts, classes, Decoding(seed=3, max_new_tokens=12))
    assert first.texts == again.texts and [p.target for p in first.pairs] == [p.target for p in again.pairs]
    for pair in first.pairs:
        eos = model.config.eos_id
        assert 1 <= len(pair.target) <= 12 and eos not in pair.target[:-1]
    one_by_one = [generate(model, tokenizer, [c], classes[i:i + 1], Decoding(do_sample=False, max_new_tokens=12))
                  .texts[0] for i, c in enumerate(contexts)]
    assert generate(model, tokenizer, contexts, classes, Decoding(do_sample=False, max_new_tokens=12)).texts \
        == one_by_one  # padding in a batch changes nothing


def test_emotion_text_reads_the_users_side_only():
    history = ["I failed my test.", "Oh no, what happened?", "I did not study.", "That happens."]
    assert emotion_text(history, "I feel awful.", user_turns=1) == "I did not study. I feel awful."
    assert emotion_text(history, "I feel awful.", user_turns=2) == "I failed my test. I did not study. I feel awful."
    assert emotion_text(history, "I feel awful.", user_turns=0) == "I feel awful."
    assert emotion_text([], "Hello.", user_turns=2) == "Hello."


def test_classes_without_an_emotion_model_are_unknown(tokenizer):
    model = tiny_model(tokenizer)
    assert classify_contexts(model.config, None, [([], "hi")] * 2).tolist() == [2, 2]
    assert label_classes(model.config, ["joyful", "happiness", ""]).tolist() == [1, 2, 2]


# --- Reward and PPO --------------------------------------------------------------------------------------------

def test_unigram_f1():
    assert unigram_f1("I am so sorry", "i am so SORRY!") == 1.0
    assert unigram_f1("", "anything") == 0.0
    # overlap {that, is}: precision 2/3, recall 2/4
    assert unigram_f1("that is great", "that is so sad") == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_reward_is_the_documented_weighted_sum(tokenizer, tmp_path):
    emotion_model = EmotionClassifier.from_pretrained(tiny_emotion_model(tokenizer, tmp_path))
    prior = torch.softmax(torch.randn(32, 32), dim=-1)
    reward_fn = Seq2SeqReward(0.3, 0.7, emotion_model, prior)
    replies, references, classes = ["I am so sorry", "great"], ["I am sorry", "That is sad."], torch.tensor([4, 9])
    terms = reward_fn(replies, references, classes)
    probs = emotion_model.predict_proba(replies)
    fit = torch.cosine_similarity(probs, prior[classes], dim=-1)
    f1 = torch.tensor([unigram_f1(r, e) for r, e in zip(replies, references)])
    assert torch.allclose(terms.emotion_fit, fit) and torch.allclose(terms.similarity, f1)
    assert torch.allclose(terms.total, 0.3 * fit + 0.7 * f1)
    without = Seq2SeqReward(0.3, 0.7)(replies, references, classes)
    assert torch.allclose(without.total, 0.7 * f1) and "dropped" in Seq2SeqReward(0.3, 0.7).formula


def test_ppo_raises_a_toy_reward(tokenizer):
    """Reward 1 for replies that open with "That": PPO moves a warm-started model towards them."""
    model = tiny_model(tokenizer)
    batch = batch_of(tokenizer, model, [([], p, r) for p, r in EXCHANGES])
    classes = torch.zeros(len(EXCHANGES), dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(30):  # a warm start that answers like the toy experts, 3 of whose 8 replies open with "That"
        optimizer_step(model, optimizer, mle_loss(model, batch, classes), step, 1.0)
    reference = tiny_model(tokenizer)
    reference.load_state_dict(model.state_dict())

    def toy_reward(replies, references, classes):
        opens = torch.tensor([float(r.startswith("That")) for r in replies])
        return RewardTerms(opens, torch.zeros_like(opens), opens)

    config = RLSeq2SeqConfig(rollout_batch=32, minibatch_size=8, decoding=Decoding(max_new_tokens=8),
                             kl_coef=0.0, emotion_model=None)
    contexts = [([], p) for p, _ in EXCHANGES] * 4
    ppo_optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    normalizer = RunningMeanStd()
    torch.manual_seed(0)
    rewards = [ppo_step(model, reference, ppo_optimizer, tokenizer, contexts, [""] * 32,
                        torch.zeros(32, dtype=torch.long), toy_reward, normalizer, config, step)["reward"]
               for step in range(12)]
    assert rewards[0] < 0.5
    assert sum(rewards[-3:]) / 3 > 0.8


# --- The whole run, export and registry ------------------------------------------------------------------------

def test_train_export_and_load_through_the_registry(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    emotion_dir = tiny_emotion_model(tokenizer, tmp_path)
    out = train_rl_seq2seq(run_config(tmp_path, str(emotion_dir)), dataset=toy_trajectories())
    responder = load_responder(out)
    assert isinstance(responder, Seq2SeqResponder) and responder.emotion_model is not None
    card = responder.card
    assert (card.kind, card.algorithm, card.steps) == ("seq2seq", "rl_seq2seq", 9)
    assert "unigram_F1" in card.config["reward"] and "cos(emotion(reply)" in card.config["reward"]
    assert {"mle", "ppo"} <= set(card.metrics) and "valid_reward" in card.metrics["ppo"]
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if "mle_loss" in r] == list(range(1, 7))
    assert all(0 <= r["reward"] <= 1 for r in records if "reward" in r)

    reply = responder.respond(["Hi there.", "Hello, how are you?"], "I lost my job today.",
                              Decoding(seed=1, max_new_tokens=10))
    assert isinstance(reply, str)
    contexts = [([], "I passed my exam!"), (["Hi there.", "Hello, how are you?"], "My dog died last week.")]
    assert len(responder.respond_batch(contexts, Decoding(do_sample=False, max_new_tokens=10))) == 2
    replies = ["That is wonderful, congratulations!", "I am so sorry."]
    scores = responder.score_batch(contexts, replies)
    # By hand: the sum of the reply's token log-probs under the class the emotion model picks.
    model = responder.model
    classes = classify_contexts(model.config, responder.emotion_model, contexts)
    pairs = encode_pairs(responder.tokenizer, [(h, p, r) for (h, p), r in zip(contexts, replies)], max_length=64,
                         max_response_tokens=32)
    expected = target_logprobs(model, collate_pairs(pairs, model.config), classes).sum(dim=1)
    assert [s.logprob for s in scores] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [s.n_tokens for s in scores] == [len(p.target) for p in pairs]
    assert scores[1].n_words == 5 and scores[0].perplexity > 1


def test_without_an_emotion_model_gold_labels_condition_and_inference_uses_unknown(tmp_path):
    # No tokenizer given either: one is trained on the training split and exported with the model.
    config = run_config(tmp_path, None, steps=1, tokenizer=None, vocab_size=300)
    out = train_rl_seq2seq(config, dataset=toy_trajectories())
    responder = load_responder(out)
    assert responder.emotion_model is None and not (out / "emotion").exists()
    assert "dropped" in responder.card.config["reward"]
    assert responder.model.config.emotions[27] == "sad"
    assert len(responder.score_batch([([], "I got a new puppy.")], ["That is wonderful!"])) == 1


def test_missing_emotion_model_is_a_clear_error(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    with pytest.raises(FileNotFoundError, match="emotion model not found.*emotion_model=null"):
        train_rl_seq2seq(run_config(tmp_path, str(tmp_path / "nope")), dataset=toy_trajectories())


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    emotion_dir = str(tiny_emotion_model(tokenizer, tmp_path))
    data = toy_trajectories()
    straight = train_rl_seq2seq(run_config(tmp_path / "a", emotion_dir, tokenizer=str(tmp_path / "tok")), dataset=data)

    class StopAt:
        def __init__(self, at):
            self.at, self.step = at, 0

        def on_step(self, step, metrics):
            self.step = step

        def on_event(self, name, info):
            pass

        def should_stop(self):
            return self.step >= self.at

    config = run_config(tmp_path / "b", emotion_dir, tokenizer=str(tmp_path / "tok"))
    train_rl_seq2seq(config, [StopAt(7)], dataset=data)  # stops after the first PPO step
    state = json.loads((tmp_path / "b" / "run" / "checkpoint-00000007" / "state.json").read_text())
    assert state["step"] == 7
    with pytest.raises(ValueError, match="already holds checkpoints: pass --resume"):
        train_rl_seq2seq(config, dataset=data)
    resumed = train_rl_seq2seq(dataclasses.replace(config, resume=True), dataset=data)
    a, b = load_file(str(straight / "seq2seq.safetensors")), load_file(str(resumed / "seq2seq.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_responder(resumed).card.steps == 9


def test_a_non_finite_loss_stops_before_the_update(tokenizer):
    model = tiny_model(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model.head.weight.sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match="step 5"):
        optimizer_step(model, optimizer, loss, 5, 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_shipped_config_loads_with_the_documented_reward_weights():
    config = load_config(RLSeq2SeqConfig, REPO_ROOT / "configs" / "rl_seq2seq.yaml", ["mle_steps=7"])
    assert (config.w_emo, config.w_sim, config.emotion_model) == (0.5, 0.5, "checkpoints/emotion")
    assert config.mle_steps == 7 and config.model.d_hidden == 256 and config.decoding.max_new_tokens == 30


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer not found.*tokenizer=null"):
        train_rl_seq2seq(run_config(tmp_path, None, tokenizer=str(tmp_path / "nope")), dataset=toy_trajectories())


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="reward weights"):
        RLSeq2SeqConfig(w_emo=0, w_sim=0)
    with pytest.raises(ValueError, match="multiple of minibatch_size"):
        RLSeq2SeqConfig(rollout_batch=10, minibatch_size=4)

