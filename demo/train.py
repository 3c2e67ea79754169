"""Train tab: a short MLE, TextGAIL or EmpathyGAIL run in a child process, with live curves and a stop button.

The run starts from a model the app already serves and is configured as `python -m core train` configures it (the
recipe's configs/<algorithm>.yaml, an optional size preset), with the visitor's few hyperparameters on top,
capped in steps, data and batch size (Settings). `demo.jobs` runs it in a process of its own (reproducible while
people chat, and off the server's threads) and follows its metrics and events files. The exported model lands in
the app's models folder, so Chat and Compare list it as soon as it is written.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.engine import recipes
from core.models.generator import is_adapter
from demo import jobs
from demo.chat import refresh_models
from demo.inputs import clamp
from demo.models import ModelStore, NotAvailable
from demo.settings import Settings

ALGORITHMS = ["mle", "textgail", "empathygail"]
NO_PRESET = "none"  # configs/<algorithm>.yaml as it is
VALID_ROWS = 64  # validation rows a capped run reads
# (plot title before a run logs, metric names in order of preference: the first one a run logs is drawn, and the
# plot is then titled by what it shows)
PLOTS = [("Loss", ["d_loss", "loss"]), ("Reward (GAIL)", ["reward", "reward_d"]),
         ("KL to the start model (GAIL)", ["kl", "approx_kl"]), ("Validation perplexity", ["valid_ppl"])]
TITLES = {"d_loss": "Discriminator loss (GAIL)", "loss": "Language-model loss (MLE)", "reward": "Reward (GAIL)",
          "reward_d": "Discriminator's reward (GAIL)", "kl": "KL to the start model (GAIL)",
          "approx_kl": "Approximate KL of a PPO update", "valid_ppl": "Validation perplexity"}
STOPPING = "Stopping after the current step…"


@dataclass
class Request:
    algorithm: str
    preset: str
    base: str  # label of the model the run starts from
    steps: int
    lr: float
    batch_size: int
    kl_coef: float
    d_pretrain_steps: int
    seed: int


def presets() -> list[str]:
    """Size presets (configs/presets/*.yaml) a run may start from, after `none`."""
    return [NO_PRESET, *recipes.presets()]


def parse_request(settings: Settings, algorithm: Any, preset: Any, base: Any, steps: Any, lr: Any, batch_size: Any,
                  kl_coef: Any, d_pretrain_steps: Any, seed: Any) -> Request:
    """Validate and cap what the form sent; raises ValueError with a message for the visitor."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {str(algorithm)[:40]!r}; choose one of {', '.join(ALGORITHMS)}")
    if preset not in presets():
        raise ValueError(f"unknown preset {str(preset)[:40]!r}; choose one of {', '.join(presets())}")
    return Request(algorithm=algorithm, preset=preset, base=str(base or ""),
                   steps=int(clamp(steps, 10, 1, settings.max_train_steps)),
                   lr=clamp(lr, recipe_lr(algorithm), 1e-7, 1e-2),
                   batch_size=int(clamp(batch_size, 8, 2, settings.max_batch_size)),
                   kl_coef=clamp(kl_coef, recipe_kl(), 0.0, 1.0),
                   d_pretrain_steps=int(clamp(d_pretrain_steps, 0, 0, settings.max_train_steps)),
                   seed=int(clamp(seed, 0, 0, 2**31 - 1)))


def recipe_lr(algorithm: str) -> float:
    """The learning rate the recipe itself trains with (configs/<algorithm>.yaml), never a copy of it."""
    return recipes.build_config(algorithm).lr


def recipe_kl() -> float:
    """EmpathyGAIL's KL coefficient (equation 7's C) as its recipe sets it."""
    return recipes.build_config("empathygail").kl_coef


def _context_size(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("n_positions") or config.get("max_position_embeddings") or 256)


def _mle_start(base_dir: Path) -> list[str]:
    """Where an MLE run starts: fresh adapters on a pretrained base (a zero-shot card), or a model trained in full."""
    card = json.loads((base_dir / "model_card.json").read_text())
    if card.get("kind") == "base":
        return [f"generator.name_or_path={card['base']['name']}", "tokenizer=null"]
    if is_adapter(base_dir):
        raise ValueError(f"{card.get('name', base_dir.name)!r} is an adapter: MLE starts from the zero-shot base "
                         "(smollm2-base) or from a model trained in full")
    return [f"generator.name_or_path={base_dir}", "generator.lora=null", f"tokenizer={base_dir}",
            f"max_length={_context_size(base_dir)}"]


def build_config(settings: Settings, request: Request, base_dir: Path, name: str):
    """The config of this run: configs/<algorithm>.yaml and the preset, as `python -m core train` builds them, then
    the visitor's values, then the app's caps and paths."""
    where = [f"name={name}", f"run_dir={settings.work_dir / 'runs' / name}",
             f"output_dir={settings.models_dir / name}", f"seed={request.seed}", f"data.data_dir={settings.data_dir}"]
    if request.algorithm == "mle":
        overrides = where + _mle_start(base_dir) + [
            f"steps={request.steps}", "epochs=null", f"lr={request.lr}", f"batch_size={request.batch_size}",
            "warmup_steps=0", "max_seconds=null", "log_every=1", f"eval_every={max(1, request.steps // 5)}",
            "eval_batches=2", f"checkpoint_every={request.steps}", "keep_last=1"]
    else:
        emotion = settings.emotion_dir
        uses_emotion = request.algorithm == "empathygail"
        if uses_emotion and not (emotion / "config.json").is_file():
            raise NotAvailable(f"EmpathyGAIL needs the emotion classifier, and there is none in {emotion} "
                               "(train it with `python -m core train emotion`)")
        buffer = request.batch_size * 2
        overrides = where + [
            f"algorithm={request.algorithm}", f"init_from={base_dir}", f"steps={request.steps}",
            f"lr={request.lr}", f"sample_batch_size={request.batch_size}", f"buffer_size={buffer}",
            f"minibatch_size={request.batch_size}", f"d_batch_size={request.batch_size}",
            f"d_pretrain_steps={request.d_pretrain_steps}", f"kl_coef={request.kl_coef}", "warmup_steps=0",
            f"eval_every={max(1, request.steps // 5)}", f"eval_samples={VALID_ROWS}", f"forward_batch_size={buffer}",
            "log_every=1",  # every step's metrics, so that an evaluation is drawn even when the run is stopped
            f"checkpoint_every={request.steps + request.d_pretrain_steps + 1}", "keep_last=1",
            f"shaping_prior_samples={min(settings.max_train_examples, 500)}",
            f"emotion_model={emotion if uses_emotion else 'null'}"]
    return recipes.build_config(request.algorithm, None, None if request.preset == NO_PRESET else request.preset,
                                overrides)


def start(runner: jobs.JobRunner, store: ModelStore, settings: Settings, algorithm: Any, preset: Any, base: Any,
          steps: Any, lr: Any, batch_size: Any, kl_coef: Any, d_pretrain_steps: Any, seed: Any) -> str:
    """Check the request and start the run; returns a message for the visitor (never raises)."""
    if not settings.training_enabled:
        return "Training is switched off on this server."
    if not store.labels():
        return ("⚠️ A run starts from a model the app serves, and there is none yet: train one with "
                "`python -m core train mle` (see README), then reload this page.")
    try:
        request = parse_request(settings, algorithm, preset, base, steps, lr, batch_size, kl_coef, d_pretrain_steps,
                                seed)
        base_dir = Path(store.card(request.base).path)
    except (ValueError, NotAvailable) as error:
        return f"⚠️ {error}"
    if not _has_files(settings.data_dir):
        return (f"⚠️ No training data: {settings.data_dir} does not exist, is empty or cannot be read. Start the "
                f"app with `--data-dir` pointing at the datasets (see README, Data).")
    name = f"{request.algorithm}-app-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        config = build_config(settings, request, base_dir, name)
    except (ValueError, NotAvailable, OSError) as error:
        return f"⚠️ {error}"

    total = config.steps if request.algorithm == "mle" else config.iterations  # GAIL: D pre-training too
    try:
        runner.start(name, total, jobs.Run(request.algorithm, config, settings.max_train_examples, VALID_ROWS))
    except jobs.Busy as error:
        return f"⚠️ {error}."
    except OSError as error:  # the work dir cannot be written, or no process can be started
        return f"⚠️ The training process could not start: {error}"
    return f"Started **{name}**: {request.algorithm} from `{request.base}`, {request.steps} steps."


def _has_files(directory: Path) -> bool:
    try:
        return directory.is_dir() and any(directory.iterdir())
    except OSError:
        return False


def stop_run(runner: jobs.JobRunner) -> str:
    return STOPPING if runner.stop() else "No run is going."


def curve(rows: list[tuple[int, float]] = ()) -> pd.DataFrame:
    """A plot's (step, value) table; typed even when empty, so the plot reads both as numbers from the start.
    One metric per plot and no `color` column: Gradio 6 draws no line when a colour field starts out empty."""
    steps, values = zip(*rows) if rows else ((), ())
    return pd.DataFrame({"step": pd.Series(steps, dtype="int64"), "value": pd.Series(values, dtype="float64")})


def curves(metrics: list[dict[str, float]]) -> list[tuple[pd.DataFrame, str]]:
    """One (table, title) per plot from the metrics logged so far: the first of the plot's metric names the run
    logs, and the title saying which it is."""
    frames = []
    for title, names in PLOTS:
        name = next((n for n in names if any(n in m for m in metrics)), None)
        frames.append((curve([(m["step"], m[name]) for m in metrics if name in m]), TITLES.get(name, title)))
    return frames


def progress_html(job: jobs.Job) -> str:
    if job.state == jobs.IDLE:
        return "<p>No run yet.</p>"
    done = min(job.step, job.total_steps) if job.total_steps else job.step
    share = done / job.total_steps if job.total_steps else 0.0
    words = {jobs.RUNNING: "running", jobs.STOPPING: "stopping after this step", jobs.FINISHED: "finished",
             jobs.STOPPED: "stopped", jobs.FAILED: "failed"}[job.state]
    text = f"<b>{html.escape(job.name)}</b>: {words}, step {done} of {job.total_steps}, {job.elapsed_s:.0f} s"
    if job.state == jobs.RUNNING and done == 0:
        text += " (reading the data and building the models before the first step: about half a minute)"
    if job.state == jobs.FINISHED or job.state == jobs.STOPPED:
        text += f". The model is saved and listed in Chat and Compare as <b>{html.escape(job.name)}</b>."
    if job.error:
        text += f"<br>⚠️ {html.escape(job.error[:500])}"
    return (f'<div id="train-progress"><progress max="1" value="{share:.3f}" style="width:100%"></progress>'
            f"<p>{text}</p></div>")


def poll(runner: jobs.JobRunner, store: ModelStore, seen: Any, shown: Any, current_model: Any):
    """Timer tick: progress, curves (only when new metrics arrived), events, and, once per finished run, the
    refreshed model list for Chat."""
    job = runner.snapshot()
    key = f"{job.name}:{len(job.metrics)}"
    plots = [gr.update(value=frame, title=title) for frame, title in curves(job.metrics)] if key != shown \
        else [gr.skip()] * len(PLOTS)
    finished = job.model_dir if job.state in (jobs.FINISHED, jobs.STOPPED) else ""
    if finished and finished != seen:
        model_update, missing = refresh_models(store, current_model)
    else:
        model_update, missing = gr.skip(), gr.skip()
    buttons = gr.update(interactive=not job.active), gr.update(interactive=job.active)
    return (progress_html(job), *plots, "\n".join(job.events[-12:]), *buttons, finished or seen, key,
            model_update, missing)


def stop_message(runner: jobs.JobRunner, message: Any):
    """Timer tick: "stopping" becomes "stopped" once the run has ended."""
    job = runner.snapshot()
    return f"Stopped at step {job.step}; the model is saved." if message == STOPPING and not job.active else gr.skip()


def build(store: ModelStore, settings: Settings, chat_model: gr.Dropdown, chat_missing: gr.Markdown) -> None:
    runner = jobs.JobRunner(keep_models=settings.keep_app_models)
    labels = store.labels()
    gr.Markdown(f"A short training run on this machine (capped at {settings.max_train_steps} steps and "
                f"{settings.max_train_examples:,} training trajectories). One run at a time; the finished model "
                "appears in Chat and Compare. MLE trains LoRA adapters on SmolLM2-135M from the zero-shot base "
                "(`smollm2-base`); GAIL starts from an MLE model. On 2 CPU cores an MLE step of 8 replies takes "
                "about 5-8 s and a GAIL update with 8 samples about 20-30 s, so 10 steps are a few minutes.")
    with gr.Row():
        algorithm = gr.Dropdown(ALGORITHMS, value="mle", label="Algorithm", elem_id="train-algorithm")
        preset = gr.Dropdown(presets(), value=NO_PRESET, label="Size preset (configs/presets/)")
        base = gr.Dropdown(labels, value=_mle_or_first(store), label="Start from", elem_id="train-base",
                           allow_custom_value=True)
    with gr.Row():
        steps = gr.Slider(1, settings.max_train_steps, value=min(10, settings.max_train_steps), step=1,
                          label="Steps", elem_id="train-steps")
        lr = gr.Number(recipe_lr("mle"), label="Learning rate", minimum=1e-7, maximum=1e-2)
        batch = gr.Slider(2, settings.max_batch_size, value=min(8, settings.max_batch_size), step=1,
                          label="Batch size (GAIL: samples per rollout)")
    with gr.Row():
        kl = gr.Slider(0.0, 1.0, value=recipe_kl(), step=0.01, label="KL coefficient (GAIL)")
        d_pre = gr.Slider(0, settings.max_train_steps, value=0, step=1, label="D pre-training steps (GAIL)")
        seed = gr.Number(0, precision=0, label="Seed")
    with gr.Row():
        go = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="train-stop")
    message = gr.Markdown(elem_id="train-message")
    progress = gr.HTML(progress_html(runner.snapshot()))
    plots = []
    for pair in (PLOTS[:2], PLOTS[2:]):
        with gr.Row():
            plots += [gr.LinePlot(curve(), x="step", y="value", title=title, height=220) for title, _ in pair]
    events = gr.Textbox(label="Events", lines=6, max_lines=12, interactive=False)
    seen, shown = gr.State(""), gr.State("")
    timer = gr.Timer(1.0)

    algorithm.change(lambda a: recipe_lr(a) if a in ALGORITHMS else gr.skip(), [algorithm], [lr],
                     api_visibility="private")
    form = [algorithm, preset, base, steps, lr, batch, kl, d_pre, seed]
    go.click(partial(start, runner, store, settings), form, [message], api_name="train", concurrency_limit=None)
    stop.click(partial(stop_run, runner), None, [message], api_name="stop_training", concurrency_limit=None)
    timer.tick(partial(poll, runner, store), [seen, shown, chat_model],
               [progress, *plots, events, go, stop, seen, shown, chat_model, chat_missing],
               api_name="training_status", concurrency_limit=None, show_progress="hidden")
    timer.tick(partial(stop_message, runner), [message], [message], api_visibility="private", show_progress="hidden")
    base.focus(lambda b: gr.update(choices=store.labels(), value=b), [base], [base], api_visibility="private")


def _mle_or_first(store: ModelStore) -> str | None:
    cards = store.cards()
    return next((label for label, card in cards.items() if card.algorithm in ("base", "mle")), next(iter(cards), None))
