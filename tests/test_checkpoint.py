import errno
import json
import random
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from core.engine import checkpoint as ckpt
from core.engine.callbacks import (CallbackList, MetricsLogger, NonFiniteLossError, StopFlag, TimeBudget,
                                   check_finite, ended, read_metrics)
from core.engine.checkpoint import (CheckpointError, export_model, latest_checkpoint, load_checkpoint,
                                    save_checkpoint)
from core.engine.runtime import seed_everything
from core.models.card import ModelCard
from core.registry import load_responder
from engine_fixtures import tiny_generator, toy_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def _trained(tokenizer, seed=0):
    """A generator, a plain module, AdamW and a schedule after two real steps (so optimizer state exists)."""
    seed_everything(seed)
    model, head = tiny_generator(tokenizer), nn.Linear(4, 2)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3))
    for _ in range(2):
        ids = torch.randint(3, len(tokenizer), (2, 10))
        loss = model(input_ids=ids, labels=ids).loss + head(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, head, optimizer, scheduler


def _save(run_dir, step, parts, **kwargs):
    model, head, optimizer, scheduler = parts
    return save_checkpoint(run_dir, step, {"generator": model, "head": head}, {"opt": optimizer},
                           {"sched": scheduler}, state={"epoch": 3, "best": float("inf"), "note": "x"}, **kwargs)


def test_round_trip_restores_weights_optimizer_schedule_rng_and_state(tmp_path, tokenizer):
    saved = _trained(tokenizer, seed=0)
    path = _save(tmp_path, 7, saved, tokenizer=tokenizer)
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))

    fresh = _trained(tokenizer, seed=1)  # different weights, optimizer moments, schedule position, RNG
    state = load_checkpoint(path, {"generator": fresh[0], "head": fresh[1]}, {"opt": fresh[2]}, {"sched": fresh[3]})

    assert state == {"epoch": 3, "best": float("inf"), "note": "x", "step": 7}
    for a, b in [(saved[0], fresh[0]), (saved[1], fresh[1])]:
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    original, restored = saved[2].state_dict(), fresh[2].state_dict()
    assert original["param_groups"] == restored["param_groups"]
    assert original["state"].keys() == restored["state"].keys()
    for key in original["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(original["state"][key][name], restored["state"][key][name])
    assert saved[3].state_dict() == fresh[3].state_dict()
    assert random.random() == expected_draws[0]
    assert np.random.rand() == expected_draws[1]
    assert torch.equal(torch.rand(3), expected_draws[2])
    assert (path / "tokenizer" / "tokenizer.json").is_file()
    assert not [p for p in path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle"}]


def test_keep_last_prunes_oldest_and_latest_is_newest(tmp_path, tokenizer):
    parts = _trained(tokenizer)
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, parts, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000003", "checkpoint-00000004"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000004"
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("step", [2, 1], ids=["new-step", "same-step"])
def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, tokenizer, monkeypatch, step):
    parts = _trained(tokenizer)
    first = _save(tmp_path, 1, parts)
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)  # fails midway: model already written, optimizer not
    with pytest.raises(CheckpointError, match="No space left on device.*untouched"):
        _save(tmp_path, step, parts)

    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-00000001"]  # no temporary or partial dirs
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    monkeypatch.undo()
    fresh = _trained(tokenizer, seed=5)
    assert load_checkpoint(latest_checkpoint(tmp_path), {"generator": fresh[0], "head": fresh[1]})["step"] == 1


def test_unwritable_run_dir_is_a_clear_error(tmp_path, tokenizer):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the run directory should be")
    with pytest.raises(CheckpointError, match="cannot write checkpoint in"):
        _save(blocker / "mle", 1, _trained(tokenizer))


def test_load_rejects_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="state.json is missing"):
        load_checkpoint(tmp_path, {})


def test_export_is_loaded_by_the_registry(tmp_path, tokenizer):
    model = tiny_generator(tokenizer).eval()
    card = ModelCard(name="toy", algorithm="mle", data="toy", steps=3, config={"lr": 1e-3})
    out = export_model(model, tokenizer, card, tmp_path / "toy", max_shard_size="50KB")
    assert len(list(out.glob("model-*.safetensors"))) > 1  # sharded below the size limit
    responder = load_responder(out)
    assert responder.card.name == "toy" and responder.card.steps == 3
    for p, q in zip(model.state_dict().values(), responder.model.state_dict().values()):
        assert torch.equal(p, q)
    assert isinstance(responder.respond([], "Hello there"), str)

    half = export_model(model, tokenizer, card, tmp_path / "toy", dtype="float16")  # replaces the first
    stored = {t.dtype for f in half.glob("*.safetensors") for t in load_file(str(f)).values()}
    assert stored == {torch.float16}
    loaded = load_responder(half).model
    assert loaded.dtype == torch.float32  # computed in float32 whatever the stored type
    for p, q in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(p.half().float(), q)
    assert model.dtype == torch.float32  # the trained model itself is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    with pytest.raises(ValueError, match="export dtype"):
        export_model(model, tokenizer, card, tmp_path / "other", dtype="int8")


def test_metrics_logger_writes_jsonl_and_drops_records_after_a_resume_point(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (10, 20, 30):
        logger.on_step(step, {"loss": 1.0 / step})
    logger.on_event("checkpoint", {"step": 20})
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]
    assert json.loads((tmp_path / "events.jsonl").read_text())["event"] == "checkpoint"

    resumed = MetricsLogger(tmp_path, resume_step=20, tensorboard=False)
    resumed.on_step(30, {"loss": 0.5})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(10, 0.1), (20, 0.05), (30, 0.5)]


def test_stop_flag_set_from_another_thread_stops_the_list():
    flag = StopFlag()
    callbacks = CallbackList([PlainCallback(), flag])
    assert not callbacks.should_stop()
    thread = threading.Thread(target=flag.stop)
    thread.start()
    thread.join()
    assert callbacks.should_stop()
    assert callbacks.stop_reason() == "stop requested"


def test_time_budget_stops_after_its_seconds_and_counts_as_complete():
    now = [100.0]
    callbacks = CallbackList([PlainCallback(), TimeBudget(30, clock=lambda: now[0])])
    now[0] = 129.9
    assert not callbacks.should_stop()
    now[0] = 130.0
    assert callbacks.should_stop() and callbacks.stop_reason() == "time budget"
    assert ended(40, 100, callbacks.stop_reason()) == {"complete": True, "stop_reason": "time budget"}
    assert ended(40, 100, "stop requested") == {"complete": False, "stop_reason": "stop requested"}
    assert ended(100, 100) == {"complete": True}
    with pytest.raises(ValueError, match="positive"):
        TimeBudget(0)


class PlainCallback:
    """A caller's own callback that implements the protocol without inheriting from it."""

    def on_step(self, step, metrics):
        pass

    def on_event(self, name, info):
        pass

    def should_stop(self):
        return False


def test_check_finite_names_the_step_and_the_way_out():
    assert check_finite(torch.tensor(2.5), 3) == 2.5
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 12.*last good checkpoint is intact"):
        check_finite(torch.tensor(float("nan")), 12)
    with pytest.raises(NonFiniteLossError, match="d_loss is inf"):
        check_finite(float("inf"), 1, name="d_loss")
