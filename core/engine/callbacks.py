"""How a caller watches and stops a training run, and where metrics go.

Every training loop calls `on_step(step, metrics)` after a logged step, `on_event(name, info)` at milestones
(`start`, `eval`, `checkpoint`, `stop`, `end`) and stops cleanly (checkpoint, export) once any callback's
`should_stop()` is true. A caller in the same process stops a run with a `StopFlag`, one in another process (the
app, which trains in a child process) with a `StopFile`; a fixed slot of machine time is a `TimeBudget`; the run's
files are a `MetricsLogger`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
STOP_REQUESTED = "stop requested"  # the reason of a stop that names none


@runtime_checkable
class Callback(Protocol):
    """Override what you need; the defaults do nothing."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def on_event(self, name: str, info: dict[str, Any]) -> None:
        return None

    def should_stop(self) -> bool:
        return False


class CallbackList(Callback):
    """Fans one loop's calls out to several callbacks."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_step(step, metrics)

    def on_event(self, name: str, info: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_event(name, info)

    def should_stop(self) -> bool:
        return any(callback.should_stop() for callback in self.callbacks)

    def stop_reason(self) -> str:
        """Why the run stops: the `reason` of the first callback that asks for it."""
        asking = [callback for callback in self.callbacks if callback.should_stop()]
        return getattr(asking[0], "reason", STOP_REQUESTED) if asking else STOP_REQUESTED


class TimeBudget(Callback):
    """Stops a run once `seconds` of wall time have passed since it was made (the trainers make it first, so that
    loading and encoding the data count too). A run that ends this way is complete: the budget was its plan (e.g.
    one GPU call of fixed length), and the model card records the steps it reached."""

    reason = "time budget"

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0:
            raise ValueError(f"a time budget must be positive, not {seconds}")
        self.seconds, self.clock = seconds, clock
        self.deadline = clock() + seconds

    def should_stop(self) -> bool:
        return self.clock() >= self.deadline


def time_budget(seconds: float | None) -> list[Callback]:
    """The callbacks a trainer adds for its `max_seconds` setting: a TimeBudget, or none when it is unset. Made
    first thing in a trainer, so that setup counts too."""
    return [TimeBudget(seconds)] if seconds else []


def ended(step: int, total: int, stop_reason: str = "") -> dict[str, Any]:
    """The model card's account of how a run ended: `complete` when it ran its steps or its time budget."""
    complete = step >= total or stop_reason == TimeBudget.reason
    return {"complete": complete, **({"stop_reason": stop_reason} if stop_reason else {})}


class StopFlag(Callback):
    """Set from any thread of the training process; the loop stops after its current step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def stop(self) -> None:
        self._event.set()

    def should_stop(self) -> bool:
        return self._event.is_set()


class StopFile(Callback):
    """Stops the run once `path` exists: how another process (the app's stop button) asks a run to stop after its
    current step. A file outlives either process and needs no signal handler; one stat per step costs nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def should_stop(self) -> bool:
        return self.path.exists()


class MetricsLogger(Callback):
    """`metrics.jsonl` (one JSON object per logged step) and `events.jsonl` in the run directory, plus
    TensorBoard scalars when tensorboard is installed.

    On resume, records after the checkpoint's step (written by the interrupted run) are dropped, so the file
    reads as one run.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.events_path = self.run_dir / EVENTS_FILE
        if resume_step is None:
            self.metrics_path.unlink(missing_ok=True)
            self.events_path.unlink(missing_ok=True)
        else:
            self._drop_after(resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def _drop_after(self, step: int) -> None:
        if not self.metrics_path.is_file():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        partial = self.metrics_path.with_suffix(".jsonl.tmp")
        partial.write_text("".join(line + "\n" for line in kept))
        os.replace(partial, self.metrics_path)  # a process killed here leaves the old log or the new, never half

    @staticmethod
    def _append(path: Path, record: dict[str, Any]) -> None:
        with path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._append(self.metrics_path, {"step": step, "time": round(time.time(), 3), **metrics})
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(name, value, step)

    def on_event(self, name: str, info: dict[str, Any]) -> None:
        self._append(self.events_path, {"event": name, "time": round(time.time(), 3), **info})
        if name == "end" and self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl, oldest first (empty when there are none yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stops before the bad update reaches a checkpoint."""

    def __init__(self, step: int, value: float, name: str = "loss"):
        self.step, self.value, self.name = step, value, name
        super().__init__(f"{name} is {value} at step {step}: training stopped before this update was saved; "
                         "the last good checkpoint is intact. Lower the learning rate or check the data, "
                         "then continue with --resume.")


def check_finite(loss: torch.Tensor | float, step: int, name: str = "loss") -> float:
    """The loss as a float, or `NonFiniteLossError` when it is NaN or infinite."""
    value = float(loss.detach().float().item() if isinstance(loss, torch.Tensor) else loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(step, value, name)
    return value
