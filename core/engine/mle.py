"""Maximum-likelihood training of the generator: language-model pretraining and fine-tuning on expert replies.

Two recipes share one nanoGPT-style loop (AdamW, linear warm-up then linear decay, gradient clipping); under a
time budget the decay is shortened to end within it (core/engine/schedule.py):

- `train_pretrain`: every utterance of the training split (conversations, quotes, reframes) as plain text,
  packed into blocks of `max_length` tokens: the offline stand-in for GPT-2's web pretraining.
- `train_mle`: (history, prompt, response) trajectories in the speaker-tag format, loss on response tokens only.
  It is the GPT-2+MLE baseline and GAIL's warm start.

Batches are a pure function of (seed, step), and checkpoints hold optimizer, schedule and RNG states, so a run
resumed from a checkpoint ends with exactly the weights of an uninterrupted one (bit for bit with one CPU thread;
with more, kernels that split sums over threads may differ in the last bit now and then, resumed or not).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from core.config import to_dict
from core.data import DataConfig, load_trajectories, seeded_subset
from core.engine.callbacks import (Callback, CallbackList, MetricsLogger, NonFiniteLossError, TimeBudget,
                                   check_finite, ended, time_budget)
from core.engine.checkpoint import capture_rng, export_model, latest_checkpoint, load_checkpoint, save_checkpoint
from core.engine.runtime import (any_process, create_accelerator, hardware_name, min_over_processes, seed_everything,
                                 shard)
from core.engine.schedule import BudgetFit, LinearSchedule
from core.models import base
from core.models.generator import GeneratorConfig, build_generator, context_length, response_logprobs
from core.models.card import ModelCard
from core.text import Encoded, collate, encode_batch, load_tokenizer, text_ids


@dataclass
class MLEConfig:
    name: str = "mle"  # the exported model's name
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # name_or_path: start from that model
    tokenizer: str | None = None  # default: generator.name_or_path; a fresh GPT-2 needs `python -m core tokenizer`
    run_dir: str = "runs/mle"  # checkpoints, metrics.jsonl
    output_dir: str = "checkpoints/mle"  # the exported model
    resume: bool = False
    seed: int = 0
    precision: str = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    batch_size: int = 32  # sequences per process and step
    max_steps: int = 2000
    epochs: float | None = None  # when set, the run is this many passes over the training examples instead
    max_length: int = 256  # tokens per sequence (pretrain: the block size)
    max_train_examples: int | None = None  # a random subset of the training rows, for quick runs
    eval_every: int = 200
    eval_batches: int = 20  # validation perplexity over this many batches of the valid split
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 3
    max_seconds: float | None = None  # a time budget: the run ends, complete, this long after it began
    export_dtype: str = "float16"  # the exported model's weights (half the size); checkpoints stay float32

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("batch_size", "max_steps", "max_length", "eval_every", "eval_batches", "log_every",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


# --- examples -----------------------------------------------------------------------------------------------


def documents(split: datasets.Dataset) -> list[list[str]]:
    """Each conversation's utterances in order, once (its latest trajectory's history, prompt and response hold
    them all); a quote, whose prompt is its response, is one utterance."""
    latest: dict[tuple[str, str], tuple[int, list[str]]] = {}
    columns = split.select_columns(["source", "conv_id", "turn", "history", "prompt", "response"])[:]
    for source, conv_id, turn, history, prompt, response in zip(*columns.values()):
        key = (source, conv_id)
        if key not in latest or turn > latest[key][0]:
            latest[key] = (turn, [*history, prompt, *([response] if response != prompt else [])])
    return [utterances for _, utterances in latest.values()]


def training_texts(data: DataConfig) -> list[str]:
    """Every utterance of the training split, once per conversation (quotes, reframes included)."""
    train = load_trajectories(data)["train"]
    return [utterance for doc in documents(train) for utterance in doc]


def pretrain_examples(tokenizer, split: datasets.Dataset, block: int, seed: int) -> list[Encoded]:
    """Documents in a seeded order, each closed by the end token, concatenated and cut into blocks of `block`
    tokens; the loss covers every token (`response_start` 0)."""
    docs = documents(split)
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    ordered = [docs[i] for i in order]
    ids = iter(text_ids(tokenizer, [u for doc in ordered for u in doc]))
    stream: list[int] = []
    for doc in ordered:
        for _ in doc:
            stream += next(ids)
        stream.append(tokenizer.eos_token_id)
    return [Encoded(stream[i:i + block], 0, False) for i in range(0, len(stream) - block + 1, block)]


def mle_examples(tokenizer, split: datasets.Dataset, max_length: int) -> list[Encoded]:
    """Trajectories in the speaker-tag format; half the length at most goes to the reply."""
    columns = split.select_columns(["history", "prompt", "response"])[:]
    return encode_batch(tokenizer, list(zip(*columns.values())), max_length, max_response_tokens=max_length // 2)


class Batches:
    """Global batches as a pure function of the step: epoch e visits the examples in an order seeded by
    (seed, e), so a resumed run sees exactly the batches that an uninterrupted one would."""

    def __init__(self, n_examples: int, global_batch: int, seed: int):
        self.n, self.size, self.seed = n_examples, min(global_batch, n_examples), seed
        self.steps_per_epoch = max(1, n_examples // self.size)
        self._epoch, self._order = -1, []

    def __call__(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.n, generator=generator).tolist()
        return self._order[position * self.size:(position + 1) * self.size]


# --- the loop -----------------------------------------------------------------------------------------------


def lm_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens that `response_mask` marks (all of a pretraining block).
    `response_logprobs` runs the LM head only from the first reply token on: with a 49k vocabulary that head
    costs as much as several transformer blocks."""
    logp = response_logprobs(model, **batch)
    return -logp.sum() / batch["response_mask"][:, 1:].sum().clamp(min=1)


@torch.no_grad()
def perplexity(model: PreTrainedModel, examples: Sequence[Encoded], batch_size: int, pad_id: int,
               accelerator: Accelerator) -> float:
    """exp(mean negative log-likelihood per loss token) over `examples`, split across processes."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=accelerator.device)
    mine = shard(examples, accelerator)
    for start in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in collate(mine[start:start + batch_size], pad_id).items()}
        with accelerator.autocast():
            logp = response_logprobs(model, **batch)
        totals += torch.stack([-logp.sum(), batch["response_mask"][:, 1:].sum().float()])
    model.train(was_training)
    nll, count = accelerator.reduce(totals, reduction="sum").tolist()
    return math.exp(nll / count) if count else float("nan")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # As in nanoGPT and GPT-2: matrices and embeddings decay; biases and layer-norm gains do not.
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def train_pretrain(config: MLEConfig, callbacks: Sequence[Callback] = (),
                   dataset: datasets.DatasetDict | None = None) -> Path:
    """Language-model pretraining on the training split's text; returns the exported model directory."""
    return _train("pretrain", config, callbacks, dataset)


def train_mle(config: MLEConfig, callbacks: Sequence[Callback] = (),
              dataset: datasets.DatasetDict | None = None) -> Path:
    """Fine-tuning on expert replies (loss on response tokens only); returns the exported model directory.
    `dataset`: trajectories with the contract's columns (default: `load_trajectories(config.data)`)."""
    return _train("mle", config, callbacks, dataset)


def _train(algorithm: str, config: MLEConfig, callbacks: Sequence[Callback],
           dataset: datasets.DatasetDict | None) -> Path:
    started = time.time()
    budget = time_budget(config.max_seconds)
    accelerator = create_accelerator(config.precision)
    main, device, world = accelerator.is_main_process, accelerator.device, accelerator.num_processes
    seed_everything(config.seed)
    run_dir = Path(config.run_dir)
    found = latest_checkpoint(run_dir) if config.resume else None
    if not config.resume and latest_checkpoint(run_dir) is not None:
        raise ValueError(f"{run_dir} already holds checkpoints: pass --resume (resume=true) to continue, "
                         "or choose another run_dir")

    tokenizer_path = config.tokenizer or config.generator.name_or_path
    if not tokenizer_path:
        raise ValueError("no tokenizer: set tokenizer=DIR (train one with `python -m core tokenizer`) or start "
                         "from a model with generator.name_or_path=DIR")
    tokenizer = load_tokenizer(base.resolve(tokenizer_path))
    if dataset is None:
        dataset = load_trajectories(config.data)
    train_rows = seeded_subset(dataset["train"], config.max_train_examples, config.seed)
    n_valid = config.eval_batches * config.batch_size * world
    if algorithm == "pretrain":
        train_examples = pretrain_examples(tokenizer, train_rows, config.max_length, config.seed)
        valid_examples = pretrain_examples(tokenizer, dataset["valid"], config.max_length, config.seed)[:n_valid]
    else:
        train_examples = mle_examples(tokenizer, train_rows, config.max_length)
        valid_rows = seeded_subset(dataset["valid"], n_valid, config.seed)
        valid_examples = mle_examples(tokenizer, valid_rows, config.max_length)
    if not train_examples:
        raise ValueError(f"no training examples: the training split has {len(train_rows)} rows, too little text "
                         f"for one block of {config.max_length} tokens")

    model = build_generator(config.generator, tokenizer)
    if config.max_length > context_length(model):
        raise ValueError(f"max_length {config.max_length} exceeds the generator's context of "
                         f"{context_length(model)} tokens")
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  fused=device.type == "cuda")
    batches = Batches(len(train_examples), config.batch_size * world, config.seed)
    total = math.ceil(config.epochs * batches.steps_per_epoch) if config.epochs else config.max_steps
    schedule = LinearSchedule(config.warmup_steps, total)  # its total_steps, the loop's end, may come forward
    scheduler = LambdaLR(optimizer, schedule)
    model, optimizer = accelerator.prepare(model, optimizer)  # the schedule steps once per update, unprepared
    raw = accelerator.unwrap_model(model)
    parts = dict(models={"generator": raw}, optimizers={"generator": optimizer},
                 schedulers={"generator": scheduler})

    step, wall_before, metrics = 0, 0.0, {}
    if found is not None:
        state = load_checkpoint(found, **parts, rank=accelerator.process_index)  # also restores the RNG
        step, wall_before, metrics = state["step"], state["wall_time_s"], state["metrics"]
    callbacks = CallbackList([*([MetricsLogger(run_dir, resume_step=step if found else None)] if main else []),
                              *budget, *callbacks])
    if found is not None:
        callbacks.on_event("resume", {"checkpoint": str(found), "step": step})

    def checkpoint(done: int) -> None:
        rng = gather_object([capture_rng()]) if world > 1 else None
        if main:
            save_checkpoint(run_dir, done, **parts, tokenizer=tokenizer, keep_last=config.keep_last, rng=rng,
                            state={"wall_time_s": wall_before + time.time() - started, "metrics": metrics})
            callbacks.on_event("checkpoint", {"step": done})
        accelerator.wait_for_everyone()

    def evaluate(done: int) -> None:
        metrics["valid_ppl"] = perplexity(raw, valid_examples, config.batch_size, tokenizer.pad_token_id, accelerator)
        callbacks.on_event("eval", {"step": done, "valid_ppl": metrics["valid_ppl"]})

    fit = BudgetFit(budget[0]) if budget else None

    def shorten_to_budget(done: int) -> None:
        fits = fit.steps_that_fit(done) if fit else None
        if fits is None:
            return
        fits = min_over_processes(accelerator, fits)  # every process must end at the same step
        if fits < schedule.total_steps:  # never lengthened: the decay already run stays as it was
            schedule.total_steps = fits  # from the next update on
            progress.total = fits
            callbacks.on_event("schedule", {"step": done, "total_steps": fits, "reason": TimeBudget.reason})

    callbacks.on_event("start", {"algorithm": algorithm, "step": step, "total_steps": schedule.total_steps,
                                 "train_examples": len(train_examples), "config": to_dict(config)})
    progress = tqdm(total=schedule.total_steps, initial=step, desc=f"{algorithm} {config.name}", disable=not main)
    losses, tokens, busy = [], 0, 0.0
    stop, stop_reason = False, ""
    model.train()
    try:
        while step < schedule.total_steps and not stop:
            tick = time.time()
            cpu_batch = collate([train_examples[i] for i in shard(batches(step), accelerator)], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in cpu_batch.items()}
            loss = lm_loss(model, batch)
            step += 1
            # Checked before the update, on the mean over processes, so no process applies a NaN step alone.
            losses.append(check_finite(accelerator.reduce(loss.detach(), reduction="mean"), step))
            accelerator.backward(loss)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(cpu_batch["attention_mask"].sum()) * world
            busy += time.time() - tick

            log = step % config.log_every == 0 or step == schedule.total_steps
            if log:
                metrics = {"loss": sum(losses) / len(losses), "lr": scheduler.get_last_lr()[0],
                           "tokens_per_s": tokens / busy, "epoch": step / batches.steps_per_epoch}
                losses, tokens, busy = [], 0, 0.0
            if step % config.eval_every == 0 or step == schedule.total_steps:
                evaluate(step)
                shorten_to_budget(step)
            if log:
                callbacks.on_step(step, metrics)
                progress.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "valid_ppl")})
            progress.update()
            stop = any_process(accelerator, callbacks.should_stop())
            if step % config.checkpoint_every == 0 or step == schedule.total_steps or stop:
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
        card = ModelCard(name=config.name, algorithm=algorithm, data=",".join(sorted(set(train_rows["source"]))),
                         steps=step, config=to_dict(config),
                         metrics={**metrics, **ended(step, schedule.total_steps, stop_reason),
                                  **({"scheduled_steps": schedule.total_steps}
                                     if schedule.total_steps < total else {})},
                         wall_time_s=round(wall_before + time.time() - started, 1),
                         hardware=hardware_name(device, world),
                         base=base.base_info(config.generator.name_or_path) if config.generator.lora else {})
        export_model(raw, tokenizer, card, out, dtype=config.export_dtype)
    accelerator.wait_for_everyone()
    callbacks.on_event("end", {"step": step, "output_dir": str(out)})
    return out
