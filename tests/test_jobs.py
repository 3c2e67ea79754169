"""The app's training runs in a child process (demo/jobs.py): followed through its run directory's files, stopped
through a stop file, reproducible whatever the app does meanwhile, one line when it fails, never an orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.engine.callbacks import STOP_REQUESTED, CallbackList, MetricsLogger, StopFile
from core.engine.recipes import build_config
from core.models.generator import build_generator
from core.paths import REPO_ROOT
from core.models.card import ModelCard
from core.registry import load_responder
from demo import jobs
from demo.tiny_world import TINY, tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny GPT-2 with dropout, so that a run draws from torch's random generator at every step."""
    directory = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    tok = tokenizer()
    build_generator(replace(TINY, dropout=0.1), tok).save_pretrained(directory)
    tok.save_pretrained(directory)
    ModelCard(name="Base", algorithm="mle", data="tiny test texts", steps=0).save(directory)
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from demo.tiny_world import write_data_dir

    return write_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPATHYGAIL_CACHE", str(tmp_path / "cache"))  # the child inherits the environment


def mle_run(base: Path, data: Path, work: Path, name: str, steps: int = 3) -> jobs.Run:
    """A tiny MLE run configured as `python -m core train mle` would be, with the app's kind of overrides."""
    config = build_config("mle", None, None, [
        f"name={name}", f"run_dir={work / 'runs' / name}", f"output_dir={work / 'models' / name}",
        f"generator.name_or_path={base}", "generator.lora=null", f"tokenizer={base}", f"data.data_dir={data}",
        f"steps={steps}",
        "epochs=null", "batch_size=4", "lr=1e-3", "warmup_steps=0", "max_length=96", "log_every=1",
        f"eval_every={steps}", "eval_batches=1", f"checkpoint_every={steps}", "keep_last=1", "seed=0"])
    return jobs.Run("mle", config, max_train_examples=50, valid_rows=8)


def wait_for_metrics(runner: jobs.JobRunner, timeout: float = 120) -> jobs.Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = runner.snapshot()
        if job.metrics or not job.active:
            return job
        time.sleep(0.05)
    raise AssertionError("the run logged no step in time")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return fields[0] not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def test_a_stop_file_stops_a_run(tmp_path):
    stop = StopFile(tmp_path / "run" / "STOP")
    callbacks = CallbackList([MetricsLogger(tmp_path / "run", tensorboard=False), stop])
    assert not callbacks.should_stop()
    stop.path.touch()
    assert callbacks.should_stop() and callbacks.stop_reason() == STOP_REQUESTED


def test_a_run_in_its_own_process_is_reproducible_while_the_app_draws_random_numbers(base, data, tmp_path):
    """Chat sampling draws from (and seeded replies reset) the app's torch generator; the run never sees it."""
    runner = jobs.JobRunner(threads=1)
    runner.start("busy", 3, mle_run(base, data, tmp_path, "busy", steps=8))
    draws = 0
    while runner.snapshot().active:
        torch.manual_seed(draws)  # what a seeded reply does
        torch.rand(1000)
        draws += 1
    busy = runner.wait(120)
    assert busy.state == jobs.FINISHED, busy.error
    assert busy.pid not in (0, os.getpid()) and busy.total_steps == 8 and draws > 10
    assert [m["step"] for m in busy.metrics] == list(range(1, 9)) and "valid_ppl" in busy.metrics[-1]
    assert "time" not in busy.metrics[0]
    assert f"process started (pid={busy.pid}, threads=1, data={data.name})" in busy.events[0]  # no server path
    assert any(" end (step=8, output_dir=" in e for e in busy.events)
    assert Path(busy.model_dir) == (tmp_path / "models" / "busy").resolve()
    assert json.loads((Path(busy.model_dir) / "config.json").read_text())["resid_pdrop"] == 0.1

    quiet = jobs.JobRunner(threads=1)
    quiet.start("quiet", 8, mle_run(base, data, tmp_path, "quiet", steps=8))
    assert quiet.wait(120).state == jobs.FINISHED
    first, second, start = (load_file(str(d / "model.safetensors")) for d in (
        Path(busy.model_dir), tmp_path / "models" / "quiet", base))
    assert first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)
    assert not all(first[k].float().equal(start[k].float()) for k in first)  # and it did train


def test_one_run_at_a_time_and_a_stop_saves_the_model(base, data, tmp_path):
    runner = jobs.JobRunner(threads=1)
    assert runner.stop() is False
    runner.start("long", 100_000, mle_run(base, data, tmp_path, "long", steps=100_000))
    with pytest.raises(jobs.Busy, match="already going"):
        runner.start("other", 3, mle_run(base, data, tmp_path, "other"))
    assert wait_for_metrics(runner).active
    assert runner.stop() is True and runner.snapshot().state == jobs.STOPPING
    job = runner.wait(120)
    assert job.state == jobs.STOPPED, job.error
    assert (tmp_path / "runs" / "long" / jobs.STOP_FILE).is_file()
    assert any("stop (step=" in event for event in job.events[-3:])  # stop, the final eval, end
    card = load_responder(job.model_dir).card
    assert card.steps == job.step < 100_000 and not card.metrics["complete"]
    assert runner.stop() is False and not alive(job.pid)
    runner.start("next", 3, mle_run(base, data, tmp_path, "next"))  # the runner is free again
    assert runner.wait(120).state == jobs.FINISHED


def test_a_failing_run_is_one_line(base, tmp_path):
    runner = jobs.JobRunner(threads=1)
    empty = tmp_path / "no-data"
    empty.mkdir()
    runner.start("bad", 3, mle_run(base, empty, tmp_path, "bad"))
    job = runner.wait(120)
    assert job.state == jobs.FAILED and "\n" not in job.error and "Traceback" not in job.error
    assert job.error.startswith(("ValueError", "FileNotFoundError")) and str(empty) in job.error
    assert "failed" in job.events[-1]
    assert "Traceback" in Path(job.log).read_text()  # the whole story stays in the run's log


def test_a_killed_child_is_reported(base, data, tmp_path):
    runner = jobs.JobRunner(threads=1)
    runner.start("killed", 100_000, mle_run(base, data, tmp_path, "killed", steps=100_000))
    job = wait_for_metrics(runner)
    os.kill(job.pid, signal.SIGKILL)
    job = runner.wait(60)
    assert job.state == jobs.FAILED and job.error.startswith("the training process was ended by SIGKILL")
    assert "\n" not in job.error and not job.model_dir


# The app's side in a process of its own: start a long run, print the child's pid once it trains, then either
# return (the interpreter exits normally) or wait to be killed.
APP = """
import json, sys, time
from core.engine.recipes import build_config
from demo import jobs
overrides, then = json.loads(sys.argv[1]), sys.argv[2]
runner = jobs.JobRunner(threads=1)
runner.start("orphan", 100_000, jobs.Run("mle", build_config("mle", None, None, overrides), 50, 8))
while not runner.snapshot().metrics:
    assert runner.snapshot().active, runner.snapshot().error
    time.sleep(0.05)
print(runner.snapshot().pid, flush=True)
if then == "wait":
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_the_run_does_not_outlive_the_app(base, data, tmp_path, how):
    run = mle_run(base, data, tmp_path, "orphan", steps=100_000)
    overrides = [f"{k}={v}" for k, v in [("name", "orphan"), ("run_dir", run.config.run_dir),
                                         ("output_dir", run.config.output_dir),
                                         ("generator.name_or_path", base), ("generator.lora", "null"),
                                         ("tokenizer", base),
                                         ("data.data_dir", data), ("steps", 100_000), ("epochs", "null"),
                                         ("batch_size", 4), ("log_every", 1), ("max_length", 96)]]
    app = subprocess.Popen([sys.executable, "-c", APP, json.dumps(overrides), "wait" if how == "is killed" else ""],
                           cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        pid = int(app.stdout.readline() or 0)
        assert pid and alive(pid)
        if how == "is killed":
            app.send_signal(signal.SIGKILL)  # no atexit, no cleanup: the child notices on its own
        assert app.wait(60) in (0, -signal.SIGKILL)
        assert gone_within(pid, 10)
    finally:
        app.kill()
        app.wait()
        if pid and alive(pid):  # the test failed: leave no training process behind either
            os.kill(pid, signal.SIGKILL)
    if how == "is killed":
        assert "the app (pid %d) is gone" % app.pid in (tmp_path / "runs" / "orphan" / jobs.LOG_FILE).read_text()


def test_after_a_run_only_the_newest_models_trained_here_stay_and_no_checkpoint(tmp_path):
    import os

    from core.models.card import ModelCard
    from demo.jobs import tidy

    runs, models = tmp_path / "runs", tmp_path / "models"
    for i, name in enumerate(["first", "second", "third", "fourth"]):
        (runs / name / "checkpoint-00000003").mkdir(parents=True)
        (runs / name / "metrics.jsonl").write_text("{}\n")
        (models / name).mkdir(parents=True)
        ModelCard(name=name, algorithm="mle").save(models / name)
        os.utime(models / name, (1_000_000 + i, 1_000_000 + i))
    assert tidy(runs, models, keep=2) == ["first", "second"]
    assert sorted(p.name for p in models.iterdir()) == ["fourth", "third"]
    assert sorted(p.name for p in runs.iterdir()) == ["fourth", "third"]
    assert (runs / "third" / "metrics.jsonl").is_file() and not (runs / "third" / "checkpoint-00000003").exists()
    assert tidy(runs, models, keep=2) == [] and tidy(tmp_path / "none", tmp_path / "none", keep=1) == []
