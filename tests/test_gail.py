"""GAIL end to end on tiny models: the toy imitation task, D pre-training, exact resume, the NaN guard, export."""

import json
import os
import shutil
import socket
import subprocess

import pytest
import torch
from datasets import Dataset, DatasetDict

from core.config import load_config
from core.engine import gail
from core.engine.callbacks import Callback, NonFiniteLossError
from core.engine.checkpoint import latest_checkpoint
from core.engine.gail import GAILConfig, GAILTrainer, train_gail
from core.engine.rollout import action_logprobs
from core.engine.runtime import create_accelerator, seed_everything
from core.models.discriminator import Discriminator, DiscriminatorConfig, discriminator_dir
from core.models.emotion import EmotionClassifier, EmotionConfig
from core.models.encoder import EncoderConfig
from core.models.generator import Decoding, generate, load_generator, response_logprobs
from core.paths import REPO_ROOT
from core.models.card import ModelCard
from core.registry import load_responder
from core.text import collate, encode_batch, load_tokenizer
from engine_fixtures import EXCHANGES, tiny_generator, toy_tokenizer

EXPERT = "I am so sorry."  # the toy task: experts always answer this
PROMPTS = [p for p, _ in EXCHANGES]


def _rows(split: str, copies: int) -> list[dict]:
    return [dict(source="empatheticdialogues", split=split, conv_id=f"{split}:{c}:{i}", turn=i % 2,
                 bucket="2" if i % 2 else "1", history=["Hi there.", "Hello, how are you?"] if i % 2 else [],
                 history_speakers=["speaker", "listener"] if i % 2 else [], prompt_speaker="speaker",
                 response_speaker="listener", prompt=p, response=EXPERT, emotion="sad", situation="")
            for c in range(copies) for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def toy_data() -> DatasetDict:
    return DatasetDict({s: Dataset.from_list(_rows(s, n)) for s, n in (("train", 4), ("valid", 1), ("test", 1))})


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    """A tiny generator fitted (MLE) to the fixtures' varied replies: it says "I am so sorry to hear that."
    and "That is wonderful!", never just "I am so sorry."."""
    directory = tmp_path_factory.mktemp("mle")
    tokenizer = toy_tokenizer(directory)
    seed_everything(0)
    model = tiny_generator(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = collate(encode_batch(tokenizer, [([], p, r) for p, r in EXCHANGES], 64), tokenizer.pad_token_id)
    for _ in range(150):
        loss = -response_logprobs(model, **batch).sum() / batch["response_mask"][:, 1:].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def emotion_dir(init_dir, tmp_path_factory):
    seed_everything(0)
    encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(init_dir), n_layer=1, n_embd=32, n_head=2,
                            max_length=64, dropout=0.0)
    return EmotionClassifier(EmotionConfig(encoder=encoder, head_hidden=16)).save_pretrained(
        tmp_path_factory.mktemp("emotion"))


def tiny_config(tmp_path, init_dir, emotion_dir=None, **overrides) -> GAILConfig:
    """EmpathyGAIL's switches (history, emotion features and shaping, KL) at toy size."""
    encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(init_dir), n_layer=1, n_embd=32, n_head=2,
                            max_length=64, dropout=0.0)
    emotion = str(emotion_dir) if emotion_dir else None
    values = dict(name="toy", init_from=str(init_dir), run_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "out"),
                  steps=30, sample_batch_size=8, buffer_size=16, minibatch_size=8, d_batch_size=8, d_pretrain_steps=4,
                  warmup_steps=0, demo_warmup_steps=2, lr=1e-3, lr_discriminator=1e-3, eval_every=10,
                  eval_samples=8, kl_coef=0.05, decoding=Decoding(max_new_tokens=8), checkpoint_every=100,
                  emotion_shaping=emotion is not None, emotion_model=emotion, shaping_weight=0.2,
                  discriminator=DiscriminatorConfig(encoder=encoder, mode="binary", use_history=True,
                                                    use_emotion_features=emotion is not None, emotion_model=emotion))
    values.update(overrides)
    return GAILConfig(**values)


def load_discriminator_of(model_dir):
    return Discriminator.from_pretrained(discriminator_dir(model_dir))


def _probe(model_dir, discriminator):
    """(mean log p of the expert reply, mean D probability of 32 sampled replies) under a model."""
    model, tokenizer = load_generator(model_dir), load_tokenizer(model_dir)
    contexts = [([], p) for p in PROMPTS] * 4
    expert = encode_batch(tokenizer, [(h, p, EXPERT) for h, p in contexts[:8]], 64)
    logp = sum(t.sum().item() for t in action_logprobs(model, expert, tokenizer.pad_token_id, model.device)) / 8
    replies = generate(model, tokenizer, contexts, Decoding(max_new_tokens=8, seed=123)).texts
    with torch.no_grad():
        return logp, discriminator.eval().score(contexts, replies).mean().item(), replies


def test_gail_imitates_the_expert_reply(tmp_path, init_dir, emotion_dir, toy_data):
    out = train_gail(tiny_config(tmp_path, init_dir, emotion_dir), dataset=toy_data)
    d = load_discriminator_of(out)
    logp_before, reward_before, replies_before = _probe(init_dir, d)
    logp_after, reward_after, replies_after = _probe(out, d)
    assert EXPERT not in replies_before
    assert logp_after > logp_before + 5  # the expert reply became far more likely
    assert reward_after > reward_before + 0.2  # and the final D finds the new replies far more expert-like
    assert replies_after.count(EXPERT) > len(replies_after) // 2
    card = ModelCard.load(out)
    assert card.algorithm == "empathygail" and card.steps == 30 and card.metrics["complete"]
    assert {"d_loss", "d_accuracy", "reward_d", "emotion_fit", "kl", "clip_fraction", "g_loss", "samples_per_s",
            "valid_ppl"} <= set(card.metrics)
    assert load_responder(out).respond([], "I lost my job today.")  # the registry serves it like any model


def test_discriminator_pretraining_leaves_the_generator_alone(tmp_path, init_dir, toy_data):
    config = tiny_config(tmp_path, init_dir, steps=2, d_pretrain_steps=3)  # 2 D steps per iteration
    assert config.pretrain_iterations == 2 and config.iterations == 4
    seed_everything(0)
    trainer = GAILTrainer(config, toy_data, create_accelerator())
    generator, discriminator = trainer.models.raw_generator, trainer.models.raw_discriminator
    g0 = [p.detach().clone() for p in generator.parameters()]
    d0 = [p.detach().clone() for p in discriminator.head.parameters()]
    for iteration in range(2):
        metrics = trainer.step(iteration)
        assert "g_loss" not in metrics and "d_loss" in metrics
    assert all(torch.equal(a, b) for a, b in zip(g0, generator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d0, discriminator.head.parameters()))
    metrics = trainer.step(2)
    assert "g_loss" in metrics and metrics["demo_ratio"] == pytest.approx(0.3)
    assert not all(torch.equal(a, b) for a, b in zip(g0, generator.parameters()))


class StopAt(Callback):
    def __init__(self, step: int):
        self.step, self.seen = step, 0

    def on_step(self, step, metrics):
        self.seen = step

    def should_stop(self) -> bool:
        return self.seen >= self.step


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path, init_dir, toy_data):
    settings = dict(steps=4, checkpoint_every=2, algorithm="textgail", kl_coef=0.0)
    whole = train_gail(tiny_config(tmp_path / "a", init_dir, **settings), dataset=toy_data)
    first = tiny_config(tmp_path / "b", init_dir, **settings)
    train_gail(first, callbacks=[StopAt(3)], dataset=toy_data)  # stops after iteration 3 of 6
    assert latest_checkpoint(first.run_dir).name == "checkpoint-00000003"
    assert not ModelCard.load(first.output_dir).metrics["complete"]
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_gail(first, dataset=toy_data)
    resumed = train_gail(tiny_config(tmp_path / "b", init_dir, resume=True, **settings), dataset=toy_data)
    a, b = load_generator(whole), load_generator(resumed)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    da, db = load_discriminator_of(whole), load_discriminator_of(resumed)
    for (name, p), q in zip(da.state_dict().items(), db.state_dict().values()):
        assert torch.equal(p, q), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # one record per iteration, none repeated after the resume
    assert ModelCard.load(resumed).algorithm == "textgail"


def test_nan_loss_stops_cleanly_with_the_last_good_checkpoint(tmp_path, init_dir, toy_data, monkeypatch):
    real = gail.discriminator_loss
    calls = {"n": 0}

    def poisoned(real_logits, fake_logits, mode):
        calls["n"] += 1
        out = real(real_logits, fake_logits, mode)
        if calls["n"] > 4:  # two D steps per iteration: the third iteration goes bad
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(gail, "discriminator_loss", poisoned)
    config = tiny_config(tmp_path, init_dir, steps=4, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match="discriminator loss is nan at step 3"):
        train_gail(config, dataset=toy_data)
    assert latest_checkpoint(config.run_dir).name == "checkpoint-00000002"
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "stop" and "nan" in events[-1]["reason"]
    monkeypatch.setattr(gail, "discriminator_loss", real)
    out = train_gail(tiny_config(tmp_path, init_dir, steps=4, checkpoint_every=1, resume=True), dataset=toy_data)
    assert all(torch.isfinite(p).all() for p in load_generator(out).parameters())


def test_configs_load_and_bad_values_are_named(tmp_path):
    textgail = load_config(GAILConfig, "configs/textgail.yaml")
    empathy = load_config(GAILConfig, "configs/empathygail.yaml")
    assert (textgail.kl_coef, textgail.emotion_shaping, textgail.lr) == (0.0, False, 1e-5)
    assert textgail.discriminator.mode == "contrastive" and not textgail.discriminator.use_history
    assert empathy.kl_coef > 0 and empathy.emotion_shaping and empathy.discriminator.use_emotion_features
    for config in (textgail, empathy):  # Table 1
        assert (config.sample_batch_size, config.buffer_size, config.minibatch_size, config.clip_epsilon,
                config.d_pretrain_steps, config.weight_decay, config.warmup_steps, config.demo_ratio,
                config.layer_norm_epsilon, config.eval_every) == (16, 128, 8, 0.2, 200, 0.01, 1000, 0.3, 1e-5, 10)
    with pytest.raises(ValueError, match="multiple of sample_batch_size"):
        GAILConfig(buffer_size=100)
    with pytest.raises(ValueError, match="algorithm 'gail'"):
        GAILConfig(algorithm="gail")
    with pytest.raises(FileNotFoundError, match="init_from"):
        train_gail(GAILConfig(init_from=str(tmp_path / "none"), run_dir=str(tmp_path / "run"), emotion_shaping=False,
                              discriminator=DiscriminatorConfig()), dataset=DatasetDict(
            {s: Dataset.from_list(_rows(s, 1)) for s in ("train", "valid", "test")}))


DDP_SCRIPT = """
import hashlib, json, sys
from pathlib import Path
from accelerate import PartialState
from datasets import load_from_disk
import core.engine.gail as gail
from core.models.discriminator import DiscriminatorConfig
from core.models.encoder import EncoderConfig
from core.models.generator import Decoding

tmp = Path(sys.argv[1])
built = []
load, make_d = gail.load_generator, gail.Discriminator
gail.load_generator = lambda *args, **kwargs: built.append(load(*args, **kwargs)) or built[-1]
gail.Discriminator = lambda *args, **kwargs: built.append(make_d(*args, **kwargs)) or built[-1]
encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(tmp / "init"), n_layer=1, n_embd=32, n_head=2,
                        max_length=64, dropout=0.0)
config = gail.GAILConfig(name="ddp", init_from=str(tmp / "init"), run_dir=str(tmp / "run"),
                         output_dir=str(tmp / "out"), steps=2, sample_batch_size=8, buffer_size=16, minibatch_size=8,
                         d_batch_size=8, d_pretrain_steps=2, warmup_steps=0, lr=1e-3, lr_discriminator=1e-3,
                         eval_every=3, eval_samples=8, decoding=Decoding(max_new_tokens=8), checkpoint_every=3,
                         emotion_shaping=False, emotion_model=None, discriminator=DiscriminatorConfig(encoder=encoder))
out = gail.train_gail(config, dataset=load_from_disk(str(tmp / "data")))
state = PartialState()
digests = [hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest() for m in built]
(tmp / f"rank{state.process_index}.json").write_text(json.dumps(
    {"digests": digests, "world": state.num_processes, "output": str(out)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate CLI is not installed")
def test_two_cpu_processes_run_gail_in_step(tmp_path, init_dir, toy_data):
    shutil.copytree(init_dir, tmp_path / "init")
    toy_data.save_to_disk(str(tmp_path / "data"))
    (tmp_path / "train.py").write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               str(tmp_path / "train.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    # One generator and one discriminator in two processes: their gradients were averaged.
    assert len(reports[0]["digests"]) == 2 and reports[0]["digests"] == reports[1]["digests"]
    card = ModelCard.load(reports[0]["output"])
    assert card.steps == 2 and card.hardware.endswith("x2")
    assert (tmp_path / "out" / "discriminator" / "model.safetensors").is_file()
