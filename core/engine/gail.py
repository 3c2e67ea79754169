"""GAIL for dialogue (the method's Algorithm 1): one engine, configured as TextGAIL or as EmpathyGAIL.

Each iteration, top to bottom:
  1. sample contexts from the expert trajectories;
  2. roll out the generator on them (batched `generate`), the first items of each sample batch replaced by the
     expert's reply (human demonstrations; ratio 0.3, held for a warm-up, then decaying linearly to 0);
  3. the discriminator scores each generated reply (probability it is the expert's);
  4. rewards: that score (+ emotion shaping), normalised with a running mean/std and clipped to [-2, 2];
     demonstrations get a constant reward (TextGAIL's 2.0);
  5. update D on expert vs generated replies (equation 6);
  6. PPO epochs over the buffer in minibatches: clipped ratio, epsilon 0.2, plus the KL penalty of equation 7
     to a frozen copy of the starting (MLE) model;
  7. metrics, validation perplexity, checkpoints (the run loop every trainer shares, core/engine/run.py).
The first iterations update D alone (`d_pretrain_steps` D steps) before the generator moves.

configs/textgail.yaml and configs/empathygail.yaml are the two settings; nothing else differs.
Data-parallel under `accelerate launch`: each process rolls out its share of the buffer, gradients are averaged.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from core.data import load_trajectories
from core.engine import ppo
from core.engine.callbacks import Callback, check_finite
from core.engine.checkpoint import export_model, load_checkpoint
from core.engine.lm import param_groups, perplexity
from core.engine.mle import mle_examples
from core.engine.rollout import Buffer, action_logprobs, batch_logprobs, fill_buffer, scatter_actions
from core.engine.run import RunConfig, at_least_one, train
from core.engine.runtime import shard
from core.models import base
from core.models.card import CARD_FILE, ModelCard, lineage
from core.models.discriminator import DISCRIMINATOR_DIR, Discriminator, DiscriminatorConfig, discriminator_loss
from core.models.emotion import EmotionClassifier, emotion_fit, reply_emotion_prior
from core.models.encoder import MINILM, EncoderConfig
from core.models.generator import (Decoding, adapter_base, context_length, is_adapter, load_generator,
                                   load_model_tokenizer, using_adapter)

POLICY_ADAPTER, REFERENCE_ADAPTER = "default", "reference"
ALGORITHMS = ("textgail", "empathygail")


@dataclass
class GAILConfig(RunConfig):
    """Every value of the method's Table 1 (the defaults: EmpathyGAIL), and the switches that tell TextGAIL
    (configs/textgail.yaml) and EmpathyGAIL apart."""

    name: str = "empathygail"
    algorithm: str = "empathygail"  # textgail | empathygail, written into the model card
    init_from: str = "checkpoints/mle"  # the MLE model directory GAIL starts from (and the KL reference)
    run_dir: str = "runs/empathygail"
    output_dir: str = "checkpoints/empathygail"  # the exported model, its discriminator in discriminator/
    # The method's Table 1
    steps: int = 750  # generator updates ("epochs"); D's pre-training iterations come on top
    sample_batch_size: int = 16
    buffer_size: int = 128
    minibatch_size: int = 8
    clip_epsilon: float = 0.2
    d_pretrain_steps: int = 200  # D steps before the generator moves
    warmup_steps: int = 1000  # generator: linear warm-up, then linear decay (WarmupLinear), in optimizer steps
    demo_ratio: float = 0.3
    demo_warmup_steps: int = 100  # generator updates with the ratio held at demo_ratio (ppo.demo_ratio)
    layer_norm_epsilon: float = 1e-5  # set when the generator is built (GeneratorConfig); checked here
    eval_every: int = 10
    # Table 1 says 1e-4, TextGAIL's configs 1e-5; configs/textgail.yaml keeps 1e-5 (docs/previews-gpt2.md: why 1e-4)
    lr: float = 1e-4  # the generator's
    lr_discriminator: float = 1e-4
    # PPO
    ppo_epochs: int = 1
    ratio_level: str = "sequence"  # sequence (TextGAIL: sum of the reply's token log-probs) | token
    kl_coef: float = 0.05  # equation 7's C; 0 gives TextGAIL's loss, and no reference model is kept
    kl_estimator: str = "k3"
    # Rewards: D's probability (+ emotion shaping), normalised with a running mean/std and clipped
    reward_momentum: float = 0.9
    reward_clip: float = 2.0
    demo_reward: float = 2.0  # a human demonstration's reward, constant, already normalised (TextGAIL)
    emotion_shaping: bool = True
    shaping_weight: float = 0.5  # reward = D + weight * emotion fit (in [0, 1]), before normalisation
    length_debias: bool = False  # remove the reward's linear trend in reply length within each buffer
    shaping_prior_samples: int = 2000  # training trajectories that estimate what emotion experts answer with
    # The emotion model of the reward's shaping and of D's emotion features (D's own setting is derived from it)
    emotion_model: str | None = "checkpoints/emotion"
    # Discriminator: EmpathyGAIL's (equation 6 with history, emotional course and the reply's own pooling)
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig(
        mode="binary", use_history=True, use_emotion_features=True, pool_reply=True,
        encoder=EncoderConfig(name_or_path=MINILM, max_length=128, freeze=True, train_top_layers=1)))
    d_batch_size: int = 8  # expert/generated pairs per D step; one pass over the buffer per iteration
    # Bookkeeping
    decoding: Decoding = field(default_factory=Decoding)
    eval_samples: int = 256
    forward_batch_size: int = 32  # no-grad log-prob passes
    log_every: int = 1
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        if self.buffer_size % self.sample_batch_size:
            raise ValueError(f"buffer_size {self.buffer_size} must be a multiple of sample_batch_size "
                             f"{self.sample_batch_size}")
        if (self.emotion_shaping or self.discriminator.use_emotion_features) and not self.emotion_model:
            raise ValueError("emotion_shaping and D's use_emotion_features need emotion_model: the directory of a "
                             "trained emotion classifier (python -m core train emotion)")
        self.discriminator.emotion_model = self.emotion_model if self.discriminator.use_emotion_features else None
        at_least_one(self, "sample_batch_size", "minibatch_size", "d_batch_size")

    @property
    def pretrain_iterations(self) -> int:
        """Iterations in which only D trains: enough of them to make `d_pretrain_steps` D steps."""
        return math.ceil(self.d_pretrain_steps / math.ceil(self.buffer_size / self.d_batch_size))

    @property
    def iterations(self) -> int:
        return self.pretrain_iterations + self.steps


@dataclass
class Models:
    generator: PreTrainedModel  # as prepared by accelerate (DDP-wrapped when data-parallel)
    raw_generator: PreTrainedModel  # the module itself: generation, checkpoints, export
    tokenizer: PreTrainedTokenizerBase
    # The KL reference, None when kl_coef is 0: the MLE adapter loaded a second time on the policy's own base
    # (reference_adapter names it; adapter switching, no second copy of the base), or a frozen copy of a model
    # trained in full
    reference: PreTrainedModel | None
    reference_adapter: str | None
    discriminator: torch.nn.Module  # prepared, like the generator
    raw_discriminator: Discriminator
    emotion: EmotionClassifier | None
    emotion_prior: torch.Tensor | None  # [n_emotions, n_emotions]: expert replies' emotion given the prompt's


def _load_emotion(config: GAILConfig, device: torch.device) -> EmotionClassifier | None:
    needed = config.emotion_shaping or config.discriminator.use_emotion_features
    return EmotionClassifier.from_pretrained(config.emotion_model, device).freeze() if needed else None


def build_models(config: GAILConfig, train_rows: datasets.Dataset, accelerator: Accelerator) -> tuple[Models, dict]:
    """The generator (from the MLE model), its frozen reference, D, the emotion model and prior, and the
    optimizers and schedule, prepared by accelerate."""
    device = accelerator.device
    adapter = is_adapter(config.init_from)
    if not adapter and not Path(config.init_from, "config.json").is_file():
        raise FileNotFoundError(f"init_from {config.init_from} is not a model directory: train the MLE model first "
                                "(python -m core train mle) or point init_from at one")
    # eval mode: no dropout, so PPO's first ratio is exactly 1
    generator = load_generator(config.init_from, device, trainable=True)
    epsilon = getattr(generator.config, "layer_norm_epsilon", config.layer_norm_epsilon)
    if epsilon != config.layer_norm_epsilon:
        print(f"note: {config.init_from} uses layer_norm_epsilon {epsilon}, "
              f"not the configured {config.layer_norm_epsilon}")
    reference, reference_adapter = None, None
    if config.kl_coef > 0 and adapter:
        generator.load_adapter(config.init_from, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        generator.set_adapter(POLICY_ADAPTER)
        reference, reference_adapter = generator, REFERENCE_ADAPTER
    elif config.kl_coef > 0:
        reference = copy.deepcopy(generator).requires_grad_(False)
    emotion = _load_emotion(config, device)
    discriminator = Discriminator(config.discriminator, emotion=emotion).to(device)
    prior = None
    if config.emotion_shaping:
        picked = random.Random(config.seed).sample(range(len(train_rows)), min(config.shaping_prior_samples,
                                                                                len(train_rows)))
        sample = train_rows.select(picked)
        prior = reply_emotion_prior(emotion.predict_proba(sample["prompt"]), emotion.predict_proba(sample["response"]))
    fused = device.type == "cuda"
    g_optimizer = torch.optim.AdamW(param_groups(generator, config.weight_decay), lr=config.lr,
                                    fused=fused)
    d_optimizer = torch.optim.AdamW(param_groups(discriminator, config.weight_decay), lr=config.lr_discriminator,
                                    fused=fused)
    g_updates = config.steps * config.ppo_epochs * math.ceil(config.buffer_size / config.minibatch_size)
    scheduler = get_linear_schedule_with_warmup(g_optimizer, min(config.warmup_steps, g_updates), g_updates)
    prepared_g, g_optimizer, prepared_d, d_optimizer = accelerator.prepare(generator, g_optimizer, discriminator,
                                                                           d_optimizer)
    models = Models(prepared_g, generator, load_model_tokenizer(config.init_from), reference, reference_adapter,
                    prepared_d, discriminator, emotion, prior)
    parts = dict(models={"generator": generator, "discriminator": discriminator},
                 optimizers={"generator": g_optimizer, "discriminator": d_optimizer},
                 schedulers={"generator": scheduler})
    return models, parts


# The steps of one iteration -------------------------------------------------------------------------------

@torch.no_grad()
def rewards_for(models: Models, buffer: Buffer, normalizer: ppo.RunningMeanStd, config: GAILConfig,
                accelerator: Accelerator) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantages of every buffer item: D's probability (+ emotion shaping) of each generated reply, normalised
    (statistics over all processes) and clipped; demonstrations get the constant `demo_reward`."""
    gen = buffer.generated()
    contexts = [buffer.contexts[i] for i in gen]
    replies = [buffer.responses[i] for i in gen]
    d = models.raw_discriminator.eval()
    score = d.score(contexts, replies, [buffer.experts[i] for i in gen]).float() if gen else torch.zeros(0)
    reward, metrics = score, {"reward_d": score}
    if models.emotion_prior is not None and gen:
        fit = emotion_fit(models.emotion.predict_proba(replies), models.emotion.predict_proba([p for _, p in contexts]),
                          models.emotion_prior).float()
        reward = reward + config.shaping_weight * fit
        metrics["emotion_fit"] = fit
    if config.length_debias and gen:
        reward = ppo.without_length_trend(reward, torch.tensor([len(r.split()) for r in replies]))
    metrics["reward"] = reward
    everywhere = accelerator.gather(reward.to(accelerator.device)) if accelerator.num_processes > 1 else reward
    if len(everywhere):
        normalizer.update(everywhere)
    advantages = torch.full((len(buffer),), config.demo_reward)
    advantages[gen] = normalizer.normalize(reward.cpu(), clip=config.reward_clip, update=False)
    return advantages, {k: v.mean().item() for k, v in metrics.items() if len(v)}


def discriminator_update(models: Models, optimizer, buffer: Buffer, config: GAILConfig, iteration: int,
                         shuffler: torch.Generator, accelerator: Accelerator) -> dict[str, float]:
    """One pass of equation 6 (or the contrastive pair loss) over the buffer's generated replies, each paired
    with the expert's reply to the same context."""
    gen = buffer.generated()
    models.raw_discriminator.train()
    order = [gen[i] for i in torch.randperm(len(gen), generator=shuffler).tolist()]
    size = max(1, config.d_batch_size // accelerator.num_processes)
    totals, steps = {}, 0
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        contexts = [buffer.contexts[i] for i in rows]
        logits = models.discriminator(contexts * 2, [buffer.experts[i] for i in rows] +
                                      [buffer.responses[i] for i in rows])
        out = discriminator_loss(logits[:len(rows)], logits[len(rows):], config.discriminator.mode)
        check_finite(accelerator.reduce(out.loss.detach(), reduction="mean"), iteration + 1, "discriminator loss")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(out.loss)
        accelerator.clip_grad_norm_(models.discriminator.parameters(), config.max_grad_norm)
        optimizer.step()
        for key, value in (("d_loss", out.loss.item()), ("d_accuracy", out.accuracy),
                           ("d_expert", out.expert_score), ("d_generated", out.generated_score)):
            totals[key] = totals.get(key, 0.0) + value
        steps += 1
    return {k: v / steps for k, v in totals.items()}


def ppo_update(models: Models, optimizer, scheduler, buffer: Buffer, advantages: torch.Tensor, config: GAILConfig,
               iteration: int, shuffler: torch.Generator, accelerator: Accelerator) -> dict[str, float]:
    """PPO epochs over the buffer in minibatches: clipped ratio + kl_coef x KL to the frozen reference (eq. 7)."""
    device, pad = accelerator.device, models.tokenizer.pad_token_id
    old = action_logprobs(models.raw_generator, buffer.sequences, pad, device, config.forward_batch_size)
    ref = old
    if models.reference is not None:
        switched = using_adapter(models.reference, models.reference_adapter) if models.reference_adapter \
            else nullcontext()
        with switched:
            ref = action_logprobs(models.reference, buffer.sequences, pad, device, config.forward_batch_size)
    size = max(1, config.minibatch_size // accelerator.num_processes)
    totals, steps = {}, 0
    for _ in range(config.ppo_epochs):
        for batch in torch.randperm(len(buffer), generator=shuffler).split(size):
            rows = batch.tolist()
            new_logp, mask = batch_logprobs(models.generator, [buffer.sequences[i] for i in rows], pad, device)
            out = ppo.ppo_loss(new_logp, scatter_actions([old[i] for i in rows], mask),
                               scatter_actions([ref[i] for i in rows], mask), mask, advantages[batch].to(device),
                               config.clip_epsilon, config.kl_coef, config.ratio_level, config.kl_estimator)
            check_finite(accelerator.reduce(out.loss.detach(), reduction="mean"), iteration + 1, "generator loss")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(out.loss)
            accelerator.clip_grad_norm_(models.generator.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            for key in ("loss", "policy_loss", "kl", "clip_fraction", "approx_kl"):
                name = "g_loss" if key == "loss" else key
                totals[name] = totals.get(name, 0.0) + getattr(out, key).item()
            steps += 1
    metrics = {k: v / steps for k, v in totals.items()}
    if models.reference is None:
        metrics.pop("kl")  # no reference (kl_coef 0): nothing was measured
    return metrics


class GAILTrainer:
    """A run's models, optimizers and sampling state; `step(iteration)` is one pass of Algorithm 1."""

    schedule = None  # the generator's schedule stays as Table 1 sets it; a time budget just ends the run

    def __init__(self, config: GAILConfig, dataset: datasets.DatasetDict | None, accelerator: Accelerator):
        dataset = dataset if dataset is not None else load_trajectories(config.data)
        train_rows = dataset["train"]
        if len(train_rows) == 0:
            raise ValueError(f"no training trajectories in the sources {', '.join(config.data.sources)}")
        self.config, self.train_rows, self.accelerator = config, train_rows, accelerator
        self.algorithm, self.total_steps, self.milestones = config.algorithm, config.iterations, set()
        self.start_info = {"pretrain_iterations": config.pretrain_iterations}
        self.started_from = lineage(config.init_from) if Path(config.init_from, CARD_FILE).is_file() else {}
        self.models, self._parts = build_models(config, train_rows, accelerator)
        self.tokenizer = self.models.tokenizer
        self.scheduler = self._parts["schedulers"]["generator"]
        self.normalizer = ppo.RunningMeanStd(config.reward_momentum)
        self.sampler = torch.Generator().manual_seed(config.seed)  # which contexts each iteration trains on
        self.shuffler = torch.Generator().manual_seed(config.seed + 1)  # D and PPO minibatch order
        n_valid = min(config.eval_samples, len(dataset["valid"]))
        valid_rows = dataset["valid"].shuffle(seed=config.seed).select(range(n_valid))
        self.valid_examples = mle_examples(self.tokenizer, valid_rows, context_length(self.models.raw_generator))

    def step(self, iteration: int) -> dict[str, float]:
        config, models, accelerator = self.config, self.models, self.accelerator
        tick = time.time()
        update = iteration - config.pretrain_iterations  # negative while only D trains
        ratio = 0.0 if update < 0 else ppo.demo_ratio(update, config.steps, config.demo_ratio,
                                                      config.demo_warmup_steps)
        with accelerator.autocast():
            # 1-2: contexts (the same draw in every process, each rolling out its share) -> rollouts + demonstrations
            picked = torch.randint(len(self.train_rows), (config.buffer_size,), generator=self.sampler).tolist()
            rows = shard(list(self.train_rows.select(picked)), accelerator)
            sample_batch = max(1, config.sample_batch_size // accelerator.num_processes)
            models.raw_generator.eval()
            buffer = fill_buffer(models.raw_generator, models.tokenizer, rows, ppo.demo_count(sample_batch, ratio),
                                 sample_batch, config.decoding)
            metrics = {"demo_ratio": ratio, "reply_tokens": sum(len(s.input_ids) - s.response_start
                                                                for s in buffer.sequences) / len(buffer)}
            # 3-4: D scores -> rewards (computed before D moves, on the replies it has not trained on yet)
            if update >= 0:
                advantages, reward_metrics = rewards_for(models, buffer, self.normalizer, config, accelerator)
                metrics.update(reward_metrics)
            # 5: D update (equation 6)
            metrics.update(discriminator_update(models, self._parts["optimizers"]["discriminator"], buffer, config,
                                                iteration, self.shuffler, accelerator))
            # 6: PPO with the KL penalty (equation 7), once D's pre-training is over
            if update >= 0:
                metrics.update(ppo_update(models, self._parts["optimizers"]["generator"], self.scheduler, buffer,
                                          advantages, config, iteration, self.shuffler, accelerator))
                metrics["lr"] = self.scheduler.get_last_lr()[0]
        if accelerator.num_processes > 1:
            names = sorted(metrics)
            values = accelerator.reduce(torch.tensor([metrics[k] for k in names], device=accelerator.device),
                                        reduction="mean")
            metrics = dict(zip(names, values.tolist()))
        metrics["samples_per_s"] = config.buffer_size / (time.time() - tick)
        return metrics

    def evaluate(self, iteration: int) -> dict[str, float]:
        return {"valid_ppl": perplexity(self.models.raw_generator, self.valid_examples, self.config.forward_batch_size,
                                        self.tokenizer.pad_token_id, self.accelerator)}

    def parts(self) -> dict[str, dict]:
        return self._parts

    def loop_state(self) -> dict:
        return {"normalizer": self.normalizer.state_dict(), "sampler": self.sampler.get_state(),
                "shuffler": self.shuffler.get_state()}

    def restore(self, path: Path) -> dict:
        state = load_checkpoint(path, **self._parts, rank=self.accelerator.process_index)  # also the RNG
        self.normalizer.load_state_dict(state["normalizer"])
        self.sampler.set_state(state["sampler"])
        self.shuffler.set_state(state["shuffler"])
        return state

    def card(self, iteration: int) -> ModelCard:
        config = self.config
        return ModelCard(name=config.name, algorithm=config.algorithm,
                         data=",".join(sorted(set(self.train_rows["source"]))),
                         steps=max(0, iteration - config.pretrain_iterations),
                         base=base.base_info(adapter_base(config.init_from)) if is_adapter(config.init_from) else {},
                         started_from=self.started_from)

    def export(self, out: Path, card: ModelCard) -> None:
        discriminator, dtype = self.models.raw_discriminator, self.config.export_dtype
        export_model(self.models.raw_generator, self.tokenizer, card, out, dtype=dtype,
                     extras=lambda directory: discriminator.save_pretrained(directory / DISCRIMINATOR_DIR, dtype))


def train_gail(config: GAILConfig, callbacks: Sequence[Callback] = (),
               dataset: datasets.DatasetDict | None = None) -> Path:
    """Run Algorithm 1 and export the generator with its discriminator in `discriminator/`; returns the export
    directory. `dataset`: trajectories with the contract's columns (default: `load_trajectories(config.data)`)."""
    return train(config, lambda accelerator: GAILTrainer(config, dataset, accelerator), callbacks)
