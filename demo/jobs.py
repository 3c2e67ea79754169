"""One background training run at a time: start it, watch its metrics and events, stop it."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

IDLE, RUNNING, STOPPING, FINISHED, STOPPED, FAILED = "idle", "running", "stopping", "finished", "stopped", "failed"
MAX_EVENTS = 50


class Busy(RuntimeError):
    """A run is already going; the app trains one model at a time."""


@dataclass
class Job:
    name: str = ""
    state: str = IDLE
    total_steps: int = 0
    step: int = 0
    metrics: list[dict[str, float]] = field(default_factory=list)  # {"step": n, name: value, ...} per logged step
    events: list[str] = field(default_factory=list)
    error: str = ""
    model_dir: str = ""  # the exported model, once the run has finished
    started: float = 0.0
    ended: float = 0.0

    @property
    def active(self) -> bool:
        return self.state in (RUNNING, STOPPING)

    @property
    def elapsed_s(self) -> float:
        return ((self.ended or time.time()) - self.started) if self.started else 0.0


class Recorder:
    """The training loop's callback (core.engine.callbacks.Callback): records into the job, asks it to stop."""

    def __init__(self, runner: JobRunner):
        self.runner = runner
        self.stop_event = threading.Event()

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        with self.runner.lock:
            job = self.runner.job
            job.step = max(job.step, int(step))
            job.metrics.append({"step": int(step), **{k: float(v) for k, v in metrics.items()
                                                      if isinstance(v, (int, float))}})

    def on_event(self, name: str, info: dict[str, Any]) -> None:
        detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()
                           if isinstance(v, (int, float, str)))[:200]
        with self.runner.lock:
            events = self.runner.job.events
            events.append(f"{time.strftime('%H:%M:%S')} {name}" + (f" ({detail})" if detail else ""))
            del events[:-MAX_EVENTS]

    def should_stop(self) -> bool:
        return self.stop_event.is_set()


class JobRunner:
    """Runs `run(callbacks) -> model directory` in a background thread, one at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.job = Job()
        self._thread: threading.Thread | None = None
        self._recorder: Recorder | None = None

    def start(self, name: str, total_steps: int, run: Callable[[Sequence[Recorder]], str | Path]) -> Job:
        with self.lock:
            if self.job.active:
                raise Busy(f"a training run is already going ({self.job.name}, step {self.job.step}/"
                           f"{self.job.total_steps}); wait for it to finish or stop it first")
            self.job = Job(name=name, state=RUNNING, total_steps=total_steps, started=time.time())
            self._recorder = recorder = Recorder(self)
            self._thread = threading.Thread(target=self._run, args=(run, recorder), name=f"train-{name}",
                                            daemon=True)
            self._thread.start()
            return replace(self.job)

    def _run(self, run: Callable, recorder: Recorder) -> None:
        try:
            model_dir = run([recorder])
        except Exception as error:  # whatever fails in training is shown in the tab, not raised in a thread
            traceback.print_exc()
            with self.lock:
                self.job.state, self.job.error = FAILED, f"{type(error).__name__}: {error}"
                self.job.ended = time.time()
            return
        with self.lock:
            self.job.state = STOPPED if recorder.should_stop() else FINISHED
            self.job.model_dir, self.job.ended = str(model_dir), time.time()

    def stop(self) -> bool:
        """Ask the run to stop after its current step (it still saves what it has); False when none runs."""
        with self.lock:
            if not self.job.active or self._recorder is None:
                return False
            self._recorder.stop_event.set()
            self.job.state = STOPPING
            return True

    def snapshot(self) -> Job:
        with self.lock:
            job = self.job
            return replace(job, metrics=list(job.metrics), events=list(job.events))

    def wait(self, timeout: float | None = None) -> Job:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()
