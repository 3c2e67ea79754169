"""The MLE loop under `accelerate launch` with two CPU processes (data-parallel over gloo)."""

import json
import os
import shutil
import socket
import subprocess
import textwrap

import pytest

from core.engine.checkpoint import latest_checkpoint, load_state
from core.paths import REPO_ROOT
from core.registry import load_responder
from engine_fixtures import toy_tokenizer, toy_trajectories

# Each process records the digest of its own trained weights (the module that the loop built and trained).
SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path
    from accelerate import PartialState
    from datasets import load_from_disk
    import core.engine.mle as mle
    import core.engine.run as run
    from core.engine.callbacks import Callback, TimeBudget
    from core.models.generator import GeneratorConfig

    tmp = Path(sys.argv[1])
    built = []
    build = mle.build_generator
    mle.build_generator = lambda *args, **kwargs: built.append(build(*args, **kwargs)) or built[-1]
    config = mle.MLEConfig(name="ddp", generator=GeneratorConfig(n_layer=2, n_embd=32, n_head=2, n_positions=64),
                           tokenizer=str(tmp / "tokenizer"), run_dir=str(tmp / "run"), output_dir=str(tmp / "model"),
                           batch_size=2, steps=3, max_length=64, eval_every=3, eval_batches=1, log_every=1,
                           checkpoint_every=2, warmup_steps=1, lr=1e-3)
    out = mle.train_mle(config, dataset=load_from_disk(str(tmp / "data")))
    state = PartialState()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in built[0].parameters())).hexdigest()

    # A time budget that each process sees pass at its own pace (rank r: 1 + r seconds a step): the schedule must
    # still end at one step for both, or the slower would wait forever for the other's gradients.
    class Clock(Callback):
        now, last_step = 0.0, 0
        def __call__(self):
            return self.now
        def on_step(self, step, metrics):
            self.now, self.last_step = self.now + 1 + state.process_index, step
    clock = Clock()
    run.time_budget = lambda seconds: [TimeBudget(seconds, clock=clock)]
    budgeted = mle.train_mle(mle.MLEConfig(**{**vars(config), "run_dir": str(tmp / "run2"), "output_dir": str(
        tmp / "model2"), "steps": 1000, "eval_every": 2, "checkpoint_every": 100, "max_seconds": 30}),
        callbacks=[clock], dataset=load_from_disk(str(tmp / "data")))
    (tmp / f"rank{state.process_index}.json").write_text(json.dumps(
        {"digest": digest, "world": state.num_processes, "output": str(out), "budgeted": str(budgeted),
         "budgeted_steps": clock.last_step}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate CLI is not installed")
def test_two_cpu_processes_train_in_step_and_agree(tmp_path):
    toy_tokenizer(tmp_path / "tokenizer")
    toy_trajectories().save_to_disk(str(tmp_path / "data"))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # accelerate's torchrun launcher; with no visible GPU each process takes the CPU and joins over gloo.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               str(script), str(tmp_path)]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[0]["digest"] == reports[1]["digest"]  # gradients were averaged: one model in two processes
    card = load_responder(reports[0]["output"]).card
    assert card.steps == 3 and card.hardware.endswith("x2")
    last = latest_checkpoint(tmp_path / "run")
    assert last.name == "checkpoint-00000003"
    assert len(load_state(last / "rng")) == 2  # each process's RNG, for an exact resume

    # Rank 1's pace (2 s a step from step 2 to 4, 21 s left beyond the 3 s reserve) fits 14 steps, rank 0's 28.
    assert [r["budgeted_steps"] for r in reports] == [14, 14]
    card = load_responder(reports[0]["budgeted"]).card
    assert card.steps == 14 and card.metrics["scheduled_steps"] == 14 and "stop_reason" not in card.metrics
