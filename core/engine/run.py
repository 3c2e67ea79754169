"""The run loop every step-based trainer shares (pretraining, MLE, RL-Seq2Seq, TextGAIL, EmpathyGAIL).

A trainer builds its models, optimizers and data, and says what one step, one evaluation and the export are
(`Trainer`); `train` does the rest, in this order:

    refuse a run_dir that holds checkpoints unless resuming; restore the latest checkpoint when resuming
    while step < total_steps and nothing asked to stop:
        metrics = trainer.step(step)                 one update (a NaN loss raises before it is applied)
        every log_every steps: log the mean of each metric since the last log
        every eval_every steps (and at milestones): evaluate; a time budget may bring the schedule's end forward
        every checkpoint_every steps (at milestones, at the end, on a stop): checkpoint
    evaluate once more if the run stopped between evaluations; write the model card and export the model

Configs extend `RunConfig`, which holds the fields every recipe shares under one name each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from core.config import to_dict
from core.data import DataConfig
from core.engine.callbacks import (Callback, CallbackList, MetricsLogger, NonFiniteLossError, TimeBudget, ended,
                                   time_budget)
from core.engine.checkpoint import capture_rng, latest_checkpoint, save_checkpoint
from core.engine.runtime import any_process, create_accelerator, hardware_name, min_over_processes, seed_everything
from core.engine.schedule import BudgetFit, LinearSchedule
from core.models.card import ModelCard


@dataclass
class RunConfig:
    """What every step-based recipe has: where it writes, how it resumes, how long it runs, how it reports."""

    name: str = "model"  # the exported model's name
    data: DataConfig = field(default_factory=DataConfig)
    run_dir: str = "runs/model"  # checkpoints, metrics.jsonl, events.jsonl
    output_dir: str = "checkpoints/model"  # the exported model
    resume: bool = False
    seed: int = 0
    precision: str = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    steps: int = 1000  # the recipe's updates (GAIL: generator updates; RL-Seq2Seq: PPO steps after its MLE steps)
    lr: float = 1e-4  # the learning rate of those updates
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 500
    keep_last: int = 3  # checkpoints kept in run_dir
    max_seconds: float | None = None  # a time budget: the run ends, complete, this long after it began
    export_dtype: str = "float16"  # the exported model's weights (half the size); checkpoints stay float32

    def __post_init__(self) -> None:
        at_least_one(self, "steps", "log_every", "eval_every", "checkpoint_every")


def at_least_one(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(config, name)}")


class Trainer(Protocol):
    algorithm: str
    tokenizer: Any  # saved with every checkpoint
    total_steps: int  # with a schedule: the schedule's own total_steps
    schedule: LinearSchedule | None  # a schedule whose end a time budget may bring forward; None: it stays
    milestones: set[int]  # steps that are evaluated and checkpointed whatever the intervals (a phase's end)
    start_info: dict[str, Any]  # what the start event reports besides the config

    def parts(self) -> dict[str, dict]: ...  # models, optimizers, schedulers: what a checkpoint holds

    def step(self, step: int) -> dict[str, float]: ...  # one update; `step` updates are done before it

    def evaluate(self, step: int) -> dict[str, float]: ...

    def loop_state(self) -> dict[str, Any]: ...  # what else a resumed run needs (running statistics, generators)

    def restore(self, path: Path) -> dict[str, Any]: ...  # load a checkpoint in place; returns its state

    def card(self, step: int) -> ModelCard: ...  # the exported model's card, before the loop adds how it ran

    def export(self, out: Path, card: ModelCard) -> None: ...


def mean_metrics(window: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the steps that reported it."""
    names = dict.fromkeys(k for metrics in window for k in metrics)
    return {k: sum(m[k] for m in window if k in m) / sum(k in m for m in window) for k in names}


def train(config: RunConfig, build: Callable[[Accelerator], Trainer], callbacks: Sequence[Callback] = ()) -> Path:
    """Run `build(accelerator)`'s trainer to its end (or a stop) and export its model; returns the export dir."""
    started = time.time()
    budget = time_budget(config.max_seconds)  # made first, so that setup counts too
    accelerator = create_accelerator(config.precision)
    main, world = accelerator.is_main_process, accelerator.num_processes
    seed_everything(config.seed)
    run_dir = Path(config.run_dir)
    found = latest_checkpoint(run_dir)
    if found is not None and not config.resume:
        raise ValueError(f"{run_dir} already holds checkpoints: pass --resume (resume=true) to continue, "
                         "or choose another run_dir")
    trainer = build(accelerator)

    step, wall_before, metrics = 0, 0.0, {}
    if found is not None:
        state = trainer.restore(found)  # also the random generators
        step, wall_before, metrics = state["step"], state.get("wall_time_s", 0.0), state["metrics"]
    callbacks = CallbackList([*([MetricsLogger(run_dir, resume_step=step if found else None)] if main else []),
                              *budget, *callbacks])
    if found is not None:
        callbacks.on_event("resume", {"checkpoint": str(found), "step": step})

    def checkpoint(done: int) -> None:
        rng = gather_object([capture_rng()]) if world > 1 else None
        if main:
            save_checkpoint(run_dir, done, **trainer.parts(), tokenizer=trainer.tokenizer, keep_last=config.keep_last,
                            rng=rng, state={**trainer.loop_state(), "metrics": metrics,
                                            "wall_time_s": wall_before + time.time() - started})
            callbacks.on_event("checkpoint", {"step": done})
        accelerator.wait_for_everyone()

    def evaluate(done: int) -> None:
        result = trainer.evaluate(done)
        metrics.update(result)
        callbacks.on_event("eval", {"step": done, **result})

    fit = BudgetFit(budget[0]) if budget and trainer.schedule is not None else None

    def shorten_to_budget(done: int) -> None:
        fits = fit.steps_that_fit(done) if fit else None
        if fits is None:
            return
        fits = min_over_processes(accelerator, fits)  # every process must end at the same step
        if fits < trainer.schedule.total_steps:  # never lengthened: the decay already run stays as it was
            trainer.schedule.total_steps = progress.total = fits  # from the next update on; total_steps follows
            callbacks.on_event("schedule", {"step": done, "total_steps": fits, "reason": TimeBudget.reason})

    callbacks.on_event("start", {"algorithm": trainer.algorithm, "step": step, "total_steps": trainer.total_steps,
                                 **trainer.start_info, "config": to_dict(config)})
    progress = tqdm(total=trainer.total_steps, initial=step, desc=f"{trainer.algorithm} {config.name}",
                    disable=not main)
    window: list[dict[str, float]] = []
    stop, stop_reason = False, ""
    try:
        while step < trainer.total_steps and not stop:
            window.append(trainer.step(step))
            step += 1
            last = step == trainer.total_steps
            log = step % config.log_every == 0 or last
            if log:
                metrics, window = mean_metrics(window), []
            if step % config.eval_every == 0 or last or step in trainer.milestones:
                evaluate(step)
                shorten_to_budget(step)
            if log:
                callbacks.on_step(step, metrics)
                progress.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()
                                      if k in ("loss", "valid_ppl", "d_accuracy", "reward")})
            progress.update()
            stop = any_process(accelerator, callbacks.should_stop())
            if step % config.checkpoint_every == 0 or step == trainer.total_steps or stop or step in trainer.milestones:
                checkpoint(step)
            if stop:
                stop_reason = callbacks.stop_reason()
                callbacks.on_event("stop", {"step": step, "reason": stop_reason})
    except NonFiniteLossError as error:
        callbacks.on_event("stop", {"step": error.step, "reason": str(error)})
        raise
    finally:
        progress.close()
    if stop and step % config.eval_every:
        evaluate(step)  # a run that stopped between evaluations: its card reports the weights it exports

    out = Path(config.output_dir).resolve()
    if main:
        card = trainer.card(step)
        card.config = to_dict(config) | card.config
        card.metrics = {**card.metrics, **metrics, **ended(step, trainer.total_steps, stop_reason)}
        card.wall_time_s = round(wall_before + time.time() - started, 1)
        card.hardware = hardware_name(accelerator.device, world)
        trainer.export(out, card)
    accelerator.wait_for_everyone()
    callbacks.on_event("end", {"step": step, "output_dir": str(out)})
    return out
