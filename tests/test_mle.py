import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from core.engine.callbacks import Callback, NonFiniteLossError, StopFlag, TimeBudget, read_metrics
from core.engine.checkpoint import latest_checkpoint, load_checkpoint
from core.engine.mle import MLEConfig, documents, lm_loss, mle_examples, pretrain_examples, train_mle, train_pretrain
from core.models.generator import response_logprobs
from core.registry import load_responder
from core.text import collate
from engine_fixtures import TINY_GENERATOR, tiny_generator, toy_tokenizer, toy_trajectories
from datasets import Dataset


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    toy_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def data():
    return toy_trajectories()


def _config(tmp_path, tokenizer_dir, **changes):
    values = dict(name="toy", generator=TINY_GENERATOR, tokenizer=str(tokenizer_dir), run_dir=str(tmp_path / "run"),
                  output_dir=str(tmp_path / "model"), lr=3e-3, warmup_steps=2, batch_size=4, steps=6,
                  max_length=64, eval_every=3, eval_batches=2, log_every=1, checkpoint_every=2)
    return MLEConfig(**{**values, **changes})


def _weights(model_dir):
    weights = {}
    for file in sorted(model_dir.glob("model*.safetensors")):
        weights.update(load_file(str(file)))
    return weights


class StopAt(Callback):
    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_step(self, step, metrics):
        self.seen = step

    def should_stop(self):
        return self.seen >= self.step


def test_mle_loss_goes_down_and_the_export_answers_through_the_registry(tmp_path, tokenizer_dir, data):
    out = train_mle(_config(tmp_path, tokenizer_dir, lr=3e-2, steps=30, eval_every=15, checkpoint_every=30),
                    dataset=data)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 31))
    first, last = sum(r["loss"] for r in records[:3]) / 3, sum(r["loss"] for r in records[-3:]) / 3
    assert last < 0.6 * first
    ppl = [r["valid_ppl"] for r in records if "valid_ppl" in r]
    assert len(ppl) == 2 and ppl[1] < ppl[0]
    responder = load_responder(out)
    assert (responder.card.algorithm, responder.card.steps, responder.card.data) == ("mle", 30, "empatheticdialogues")
    assert responder.card.metrics["complete"] and responder.card.config["lr"] == 3e-2
    assert responder.card.wall_time_s > 0 and responder.card.hardware
    assert isinstance(responder.respond([], "I lost my job today."), str)
    # It learnt the replies: an expert reply is now far likelier than a scrambled one.
    good, bad = responder.score_batch([([], "I passed my exam!")] * 2,
                                      ["That is wonderful, congratulations!", "congratulations wonderful, is That!"])
    assert good.logprob > bad.logprob + 5
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and "checkpoint" in events


def test_the_loss_covers_response_tokens_only(tokenizer_dir, data):
    from core.text import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    model = tiny_generator(tokenizer).eval()
    batch = collate(mle_examples(tokenizer, data["train"].select(range(4)), 64), tokenizer.pad_token_id)
    with torch.no_grad():
        logp = response_logprobs(model, **batch)
        expected = -logp.sum() / batch["response_mask"][:, 1:].sum()
        torch.testing.assert_close(lm_loss(model, batch), expected, atol=1e-5, rtol=1e-5)
        # Changing the history and the prompt moves the loss only through the context, never adds terms.
        assert batch["response_mask"].sum() < batch["attention_mask"].sum() / 2


def test_pretrain_packs_every_utterance_into_blocks_and_runs(tmp_path, tokenizer_dir, data):
    docs = documents(data["train"])
    assert len(docs) == len(data["train"])  # one trajectory per toy conversation
    assert ["Hi there.", "Hello, how are you?", "My dog died last week.", "I am so sorry for your loss."] in docs
    quotes = Dataset.from_list([dict(source="quotes", conv_id="q1", turn=0, history=[], prompt="Keep going.",
                                     response="Keep going.")])
    assert documents(quotes) == [["Keep going."]]

    from core.text import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    blocks = pretrain_examples(tokenizer, data["train"], 16, seed=0)
    assert blocks and all(len(b.input_ids) == 16 and b.response_start == 0 for b in blocks)
    stream = [t for b in blocks for t in b.input_ids]
    assert stream.count(tokenizer.eos_token_id) >= len(docs) - 1  # documents end with the end token

    out = train_pretrain(_config(tmp_path, tokenizer_dir, max_length=32, steps=5), dataset=data)
    card = load_responder(out).card
    assert card.algorithm == "pretrain" and card.steps == 5
    assert all(r["loss"] > 0 for r in read_metrics(tmp_path / "run"))


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, tokenizer_dir, data):
    whole = train_mle(_config(tmp_path / "a", tokenizer_dir), dataset=data)

    interrupted = _config(tmp_path / "b", tokenizer_dir)
    train_mle(interrupted, callbacks=[StopAt(3)], dataset=data)
    assert latest_checkpoint(interrupted.run_dir).name == "checkpoint-00000003"
    assert not load_responder(interrupted.output_dir).card.metrics["complete"]
    interrupted.resume = True
    resumed = train_mle(interrupted, dataset=data)

    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_responder(resumed).card.steps == 6
    assert [r["step"] for r in read_metrics(interrupted.run_dir)] == list(range(1, 7))
    # Dropout is on, so equality needs the restored RNG: without it the weights differ.
    assert TINY_GENERATOR.dropout > 0


def test_existing_checkpoints_need_resume(tmp_path, tokenizer_dir, data):
    config = _config(tmp_path, tokenizer_dir, steps=2)
    train_mle(config, dataset=data)
    with pytest.raises(ValueError, match="already holds checkpoints: pass --resume"):
        train_mle(config, dataset=data)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer_dir, data):
    config = _config(tmp_path, tokenizer_dir, lr=1e30, warmup_steps=0, max_grad_norm=0.0, checkpoint_every=1,
                     steps=20)
    with pytest.raises(NonFiniteLossError, match="is (nan|inf) at step 2.*last good checkpoint is intact"):
        train_mle(config, dataset=data)
    last = latest_checkpoint(config.run_dir)
    assert last.name == "checkpoint-00000001"
    model = tiny_generator(toy_tokenizer())
    assert load_checkpoint(last, {"generator": model})["step"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "model").exists()


def test_stop_flag_ends_the_run_cleanly_with_a_checkpoint_and_a_model(tmp_path, tokenizer_dir, data):
    flag = StopFlag()

    class PressStop(Callback):
        def on_step(self, step, metrics):
            if step == 2:
                flag.stop()

    out = train_mle(_config(tmp_path, tokenizer_dir, steps=50), callbacks=[PressStop(), flag], dataset=data)
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-00000002"
    assert load_responder(out).card.steps == 2


def test_command_line_tokenizer_pretrain_then_mle_from_raw_files(tmp_path, capsys):
    from core.__main__ import main
    from demo.tiny_world import write_data_dir

    data = write_data_dir(tmp_path / "data")
    data_options = [f"data.data_dir={data}", f"data.cache_dir={tmp_path / 'cache'}"]
    small = ["generator.n_layer=1", "generator.n_embd=32", "generator.n_head=2", "generator.n_positions=64",
             "max_length=32", "batch_size=2", "steps=3", "eval_every=3", "eval_batches=1", "log_every=1"]
    assert main(["tokenizer", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), "--vocab-size", "300",
                 "--min-frequency", "1",
                 "--out", str(tmp_path / "tok")]) == 0
    assert main(["train", "pretrain", "--preset", "tiny", "--run-dir", str(tmp_path / "runs/pretrain"),
                 f"tokenizer={tmp_path / 'tok'}", f"output_dir={tmp_path / 'models/pretrain'}",
                 *data_options, *small]) == 0
    assert main(["train", "mle", "--preset", "tiny", "--run-dir", str(tmp_path / "runs/mle"),
                 f"generator.name_or_path={tmp_path / 'models/pretrain'}", f"output_dir={tmp_path / 'models/mle'}",
                 *data_options, "max_length=32", "batch_size=2", "steps=2", "eval_every=2", "log_every=1"]) == 0
    assert "mle: model saved to" in capsys.readouterr().out
    card = load_responder(tmp_path / "models/mle").card
    assert (card.algorithm, card.steps, card.config["generator"]["name_or_path"]) == \
        ("mle", 2, str(tmp_path / "models/pretrain"))
    assert card.data == "dailydialog,empatheticdialogues,reframes"  # configs/mle.yaml leaves quotes out

    # Running again over existing checkpoints needs --resume; with it, the finished run only re-exports.
    assert main(["train", "mle", "--preset", "tiny", "--run-dir", str(tmp_path / "runs/mle"), "--resume",
                 f"generator.name_or_path={tmp_path / 'models/pretrain'}", f"output_dir={tmp_path / 'models/mle'}",
                 *data_options, "max_length=32", "batch_size=2", "steps=2"]) == 0
    assert main(["train", "mle", "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


class StepClock(Callback):
    """A clock that each logged step moves one second on: a pace the test knows exactly."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def on_step(self, step, metrics):
        self.now += 1.0


def test_a_time_budget_too_short_for_the_schedule_brings_the_decay_forward(tmp_path, tokenizer_dir, data,
                                                                          monkeypatch):
    clock = StepClock()
    monkeypatch.setattr("core.engine.run.time_budget", lambda seconds: [TimeBudget(seconds, clock=clock)])
    config = _config(tmp_path, tokenizer_dir, steps=1000, max_seconds=100, eval_every=10, checkpoint_every=10)
    out = train_mle(config, callbacks=[clock], dataset=data)

    # Measured from step 10 to 20 (1 s a step, 81 s left less 10 s in reserve): the decay ends at step 91.
    card = load_responder(out).card
    assert card.steps == 91 and card.metrics["complete"] and "stop_reason" not in card.metrics
    assert card.metrics["scheduled_steps"] == 91
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run")}
    assert [lrs[s] for s in range(21, 92)] == pytest.approx([config.lr * (91 - s) / (91 - 2) for s in range(21, 92)])
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["step"], e["total_steps"]) for e in events if e["event"] == "schedule"] == [(20, 91)]

    # Resumed with a fresh budget that would hold more steps, the run keeps the schedule it had.
    for late in ("checkpoint-00000090", "checkpoint-00000091"):
        shutil.rmtree(tmp_path / "run" / late)
    clock.now = 0.0
    out = train_mle(MLEConfig(**{**vars(config), "resume": True}), callbacks=[clock], dataset=data)
    assert load_responder(out).card.steps == 91 and read_metrics(tmp_path / "run")[-1]["lr"] == 0.0


def test_a_time_budget_ends_the_run_complete_and_the_export_is_float16(tmp_path, tokenizer_dir, data):
    out = train_mle(_config(tmp_path, tokenizer_dir, steps=50, max_seconds=1e-9), dataset=data)
    card = load_responder(out).card
    assert card.steps == 1 and card.metrics["complete"] and card.metrics["stop_reason"] == "time budget"
    assert card.metrics["valid_ppl"] > 1  # evaluated at the step it stopped, though eval_every is 3
    assert {t.dtype for t in _weights(out).values()} == {torch.float16}
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-00000001"  # float32 checkpoint to resume from
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert {"event": "stop", "step": 1, "reason": "time budget"}.items() <= next(
        e for e in events if e["event"] == "stop").items()
