"""One training run at a time, in a child process: start it, follow its metrics and events, stop it.

The app trains in a process of its own (`python -m demo.jobs <run_dir>/job.json`), not in a thread of the serving
one, for two reasons: the run seeds and draws from its own torch random generator, so a run started in the app is
reproducible however many people chat meanwhile (and a seeded reply is reproducible while a run trains), and its
compute holds neither the server's GIL nor its torch threads. The child uses `train_threads()` torch threads (1 on
the Space's 2 cores, so that serving keeps a core).

Parent and child share only files in the run directory: the parent writes `job.json` (the recipe, its config as a
dict, the data caps) and, to stop the run, `STOP` (the child's `StopFile` callback: it stops after its current
step, checkpoints and exports); the child's `MetricsLogger` writes `metrics.jsonl` and `events.jsonl`, which the
parent follows, and its stdout and stderr go to `job.log`. A child that fails ends its log with one `error: ...`
line, which the Train tab shows. The parent terminates its child when it exits, and the child exits by itself
once its parent is gone (killed, even with SIGKILL), so no run outlives the app.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.engine.callbacks import EVENTS_FILE, METRICS_FILE
from core.paths import REPO_ROOT

IDLE, RUNNING, STOPPING, FINISHED, STOPPED, FAILED = "idle", "running", "stopping", "finished", "stopped", "failed"
MAX_EVENTS = 50
POLL_S = 0.5  # how often the parent reads the run's files (the Train tab's timer ticks every second)
JOB_FILE, LOG_FILE, STOP_FILE = "job.json", "job.log", "STOP"
ERROR_PREFIX = "error: "  # the child's last line when it fails: what the Train tab shows
PARENT_CHECK_S = 1.0  # how often the child checks that the app is still there
TAIL_BYTES = 8192  # of job.log, read for the error of a failed child


class Busy(RuntimeError):
    """A run is already going; the app trains one model at a time."""


@dataclass
class Run:
    """What the child trains: a recipe's config as `core.engine.recipes.build_config` builds it, on a seeded
    random subset of at most `max_train_examples` training trajectories and the first `valid_rows` validation
    ones."""

    recipe: str
    config: Any  # the recipe's config dataclass; it has run_dir, output_dir, seed and data
    max_train_examples: int
    valid_rows: int


@dataclass
class Job:
    name: str = ""
    state: str = IDLE
    total_steps: int = 0
    step: int = 0
    metrics: list[dict[str, float]] = field(default_factory=list)  # {"step": n, name: value, ...} per logged step
    events: list[str] = field(default_factory=list)
    error: str = ""  # one line
    model_dir: str = ""  # the exported model, once the run has finished
    started: float = 0.0
    ended: float = 0.0
    pid: int = 0  # the child process
    log: str = ""  # its stdout and stderr

    @property
    def active(self) -> bool:
        return self.state in (RUNNING, STOPPING)

    @property
    def elapsed_s(self) -> float:
        return ((self.ended or time.time()) - self.started) if self.started else 0.0


def train_threads() -> int:
    """Torch threads for a run: half the cores this process may use, at least one, so that serving keeps the
    other half (1 on a 2-core Space)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def format_event(record: dict[str, Any]) -> str:
    """`HH:MM:SS name (key=value, ...)` from an events.jsonl record; nested values (the config) are left out, and
    a path on the server shows only its last part: visitors see the events."""
    info = {k: (Path(v).name if isinstance(v, str) and os.path.isabs(v) else v) for k, v in record.items()
            if k not in ("event", "time")}
    detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()
                       if isinstance(v, (int, float, str)))[:200]
    stamp = time.strftime("%H:%M:%S", time.localtime(record.get("time") or time.time()))
    return f"{stamp} {record.get('event', '?')}" + (f" ({detail})" if detail else "")


def tidy(runs_dir: Path, models_dir: Path, keep: int) -> list[str]:
    """A public server must not fill its disk or everyone's model lists: once a run has ended its checkpoints go
    (its exported model holds what it learned; its metrics, events and log stay), and only the newest `keep` models
    trained here stay, with their run folders. Returns the names of the models removed."""
    from core.engine.checkpoint import CHECKPOINT_PATTERN
    from core.models.card import CARD_FILE

    for run in (p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else ():
        for checkpoint in run.iterdir():
            if checkpoint.is_dir() and CHECKPOINT_PATTERN.match(checkpoint.name):
                shutil.rmtree(checkpoint, ignore_errors=True)
    models = sorted((p for p in models_dir.iterdir() if (p / CARD_FILE).is_file()),
                    key=lambda p: p.stat().st_mtime) if models_dir.is_dir() else []
    removed = models[:max(0, len(models) - keep)]
    for model in removed:
        shutil.rmtree(model, ignore_errors=True)
        shutil.rmtree(runs_dir / model.name, ignore_errors=True)
    return [model.name for model in removed]


class JsonlFollower:
    """The records appended to a JSON-lines file since the last read; a line still being written waits for the
    next read."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                chunk = file.read()
        except FileNotFoundError:  # not written yet
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = []
        for line in complete.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # not a record; the child's files are written by MetricsLogger only
                continue
        return records


# The children still running, terminated when the app exits (normally or by Ctrl-C; a killed app's child notices
# by itself, see `_exit_with_parent`).
_children: set[subprocess.Popen] = set()


@atexit.register
def _terminate_children() -> None:
    for process in list(_children):
        process.terminate()
    for process in list(_children):
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _child_env(threads: int) -> dict[str, str]:
    path = [str(REPO_ROOT), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
            "TQDM_DISABLE": "1"}  # the libraries' progress bars (the loop's own, switched explicitly, stays)


class JobRunner:
    """Runs one `Run` at a time in a child process and follows it from its run directory's files."""

    def __init__(self, threads: int | None = None, poll_s: float = POLL_S, keep_models: int | None = None):
        self.keep_models = keep_models  # models trained here kept after each run (None: all); see `tidy`
        self.lock = threading.Lock()
        self.job = Job()
        self.threads = threads or train_threads()
        self.poll_s = poll_s
        self._process: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self._stop_file: Path | None = None

    def start(self, name: str, total_steps: int, run: Run) -> Job:
        """Launch the run; raises Busy while another one is going, OSError when its run dir cannot be written."""
        from core.config import to_dict

        with self.lock:
            if self.job.active:
                raise Busy(f"a training run is already going ({self.job.name}, step {self.job.step}/"
                           f"{self.job.total_steps}); wait for it to finish or stop it first")
            run_dir = Path(run.config.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in (METRICS_FILE, EVENTS_FILE, STOP_FILE):  # a run dir is fresh: nothing to follow yet
                (run_dir / stale).unlink(missing_ok=True)
            job_file, log_path = run_dir / JOB_FILE, run_dir / LOG_FILE
            job_file.write_text(json.dumps({
                "recipe": run.recipe, "config": to_dict(run.config), "max_train_examples": run.max_train_examples,
                "valid_rows": run.valid_rows, "stop_file": str((run_dir / STOP_FILE).resolve()),
                "threads": self.threads, "parent_pid": os.getpid()}, indent=1, default=str))
            with log_path.open("wb") as log:  # the child holds its own descriptor
                process = subprocess.Popen([sys.executable, "-m", "demo.jobs", str(job_file.resolve())],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=_child_env(self.threads), start_new_session=True)
            _children.add(process)
            now = time.time()
            self.job = Job(name=name, state=RUNNING, total_steps=total_steps, started=now, pid=process.pid,
                           log=str(log_path), events=[format_event({
                               "event": "process started", "time": now, "pid": process.pid,
                               "threads": self.threads, "data": str(run.config.data.data_dir)})])
            self._process, self._stop_file = process, run_dir / STOP_FILE
            self._watcher = threading.Thread(target=self._watch, name=f"train-{name}", daemon=True,
                                             args=(process, run_dir, log_path,
                                                   str(Path(run.config.output_dir).resolve())))
            self._watcher.start()
            return replace(self.job)

    def _watch(self, process: subprocess.Popen, run_dir: Path, log_path: Path, output_dir: str) -> None:
        metrics, events = JsonlFollower(run_dir / METRICS_FILE), JsonlFollower(run_dir / EVENTS_FILE)
        stopped = False
        while True:
            try:
                process.wait(self.poll_s)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
            new_metrics, new_events = metrics.read(), events.read()  # after the exit check: the last lines too
            stopped |= any(e.get("event") == "stop" for e in new_events)
            output_dir = next((str(e["output_dir"]) for e in new_events if e.get("event") == "end"
                               and "output_dir" in e), output_dir)
            self._record(new_metrics, new_events)
            if exited:
                break
        _children.discard(process)
        error = "" if process.returncode == 0 else failure(process.returncode, log_path)
        with self.lock:
            job = self.job
            job.ended = time.time()
            if error:
                job.state, job.error = FAILED, error
                self._add_event({"event": "failed", "time": job.ended, "error": error})
            else:
                job.state, job.model_dir = STOPPED if stopped else FINISHED, output_dir
        if error:  # the operator's view: the tab shows the one line, the log has the traceback
            print(f"training run {job.name} failed: {error} (log: {log_path})", file=sys.stderr, flush=True)
        if self.keep_models is not None:
            removed = tidy(run_dir.parent, Path(output_dir).parent, self.keep_models)
            if removed:
                with self.lock:
                    self._add_event({"event": "removed older models trained here", "time": time.time(),
                                     "models": ", ".join(removed)})

    def _record(self, metrics: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        with self.lock:
            job = self.job
            for record in metrics:
                step = int(record.get("step", 0))
                job.step = max(job.step, step)
                job.metrics.append({"step": step, **{k: float(v) for k, v in record.items()
                                                     if k not in ("step", "time") and isinstance(v, (int, float))}})
            for record in events:
                if record.get("event") == "start" and isinstance(record.get("total_steps"), int):
                    job.total_steps = record["total_steps"]
                self._add_event(record)

    def _add_event(self, record: dict[str, Any]) -> None:
        self.job.events.append(format_event(record))
        del self.job.events[:-MAX_EVENTS]

    def stop(self) -> bool:
        """Ask the run to stop after its current step (it still saves and exports what it has); False when none
        runs."""
        with self.lock:
            if not self.job.active or self._stop_file is None:
                return False
            try:
                self._stop_file.touch()
            except OSError as error:  # the run dir went away: end the child instead
                print(f"cannot write {self._stop_file} ({error}); terminating the run", file=sys.stderr)
                self._process.terminate()
            self.job.state = STOPPING
            return True

    def snapshot(self) -> Job:
        with self.lock:
            job = self.job
            return replace(job, metrics=list(job.metrics), events=list(job.events))

    def wait(self, timeout: float | None = None) -> Job:
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout)
        return self.snapshot()


def failure(returncode: int, log_path: Path) -> str:
    """One line for the Train tab: the child's own `error:` line, else how it ended and its last line of output."""
    try:
        with log_path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = [line.strip() for line in file.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    said = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    if said:
        return said[-1][:500]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"the training process was ended by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        how = f"the training process exited with status {returncode}"
    return (how + (f"; its last output: {lines[-1]}" if lines else ""))[:500]


# --- the child -----------------------------------------------------------------------------------------------


def load_capped_data(data_config, max_examples: int, valid_rows: int, seed: int):
    """The recipe's expert trajectories, with the training split cut to the cap (a seeded random subset) and the
    validation split to its first `valid_rows`."""
    from core.data import load_trajectories, seeded_subset

    data = load_trajectories(data_config)
    train = seeded_subset(data["train"], max_examples, seed)
    valid = data["valid"].select(range(min(valid_rows, len(data["valid"]))))
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"the data in {data_config.data_dir} has {len(train)} training and {len(valid)} "
                         f"validation trajectories from {', '.join(data_config.sources)}; a run needs both")
    return type(data)({"train": train, "valid": valid, "test": data["test"]})


def _exit_with_parent(parent: int) -> None:
    """End this process once `parent` is no longer its parent (the app was killed and this one re-parented)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        print(f"{ERROR_PREFIX}the app (pid {parent}) is gone; the run ends with it", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _train(spec: dict[str, Any]) -> Path:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(spec["threads"])
    from core.config import from_dict
    from core.engine.callbacks import StopFile
    from core.engine.recipes import recipe

    config_class, train = recipe(spec["recipe"])
    config = from_dict(config_class, spec["config"])
    dataset = load_capped_data(config.data, spec["max_train_examples"], spec["valid_rows"], config.seed)
    return train(config, [StopFile(spec["stop_file"])], dataset=dataset)


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m demo.jobs JOB_FILE` (written by `JobRunner.start`). Exit status 0 once the model is
    exported; otherwise 1, with the traceback and then one `error: ...` line on stderr."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m demo.jobs JOB_FILE (the {JOB_FILE} that the app's JobRunner writes)",
              file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(argv[0]).read_text())
        _exit_with_parent(spec["parent_pid"])
        model_dir = _train(spec)
    except Exception as error:  # the app shows the last line; the traceback stays in job.log
        traceback.print_exc()
        print(ERROR_PREFIX + f"{type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
        return 1
    print(f"model saved to {model_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
