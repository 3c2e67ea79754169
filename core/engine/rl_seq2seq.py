"""The RL-Seq2Seq baseline's training (after Fung et al. 2018): MLE pretraining, then PPO fine-tuning.

The emotion-conditioned seq2seq model (core/models/seq2seq.py) first learns the expert replies with teacher
forcing, then PPO (sequence-level clipped surrogate, no value function, normalised rewards) raises

    reward = w_emo * emotion_fit + w_sim * unigram_F1(reply, expert reply)

where emotion_fit is the cosine between the emotion model's distribution over the reply and the mean distribution
of expert replies to contexts of the class the reply was conditioned on (docs/baselines.md gives every detail).
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from core.data import ED_EMOTIONS, load_trajectories, seeded_subset
from core.engine.callbacks import Callback, check_finite
from core.engine.checkpoint import latest_checkpoint, load_checkpoint, write_atomically
from core.engine.lm import param_groups
from core.engine.mle import Batches
from core.engine.ppo import RunningMeanStd, ppo_loss
from core.engine.run import RunConfig, train
from core.engine.seq2seq_reward import RewardTerms, Seq2SeqReward
from core.models.card import ModelCard
from core.models.emotion import EmotionClassifier, reply_emotion_prior
from core.models.generator import Decoding
from core.models.seq2seq import (EMOTION_DIR, Pair, Seq2Seq, Seq2SeqArch, build_seq2seq, collate_pairs,
                                 context_emotions, encode_pairs, generate, label_classes, target_logprobs)
from core.safe_files import write_checksums
from core.text import VOCAB_SIZE, Context, load_tokenizer, train_tokenizer

ALGORITHM = "rl_seq2seq"
@dataclass
class RLSeq2SeqConfig(RunConfig):
    name: str = "rl_seq2seq"
    run_dir: str = "runs/rl_seq2seq"
    output_dir: str = "checkpoints/rl_seq2seq"
    model: Seq2SeqArch = field(default_factory=Seq2SeqArch)
    # The shared tokenizer's directory (`python -m core tokenizer`); None trains a byte-level BPE of `vocab_size` on
    # the training split, kept in every checkpoint so a resumed run reads the same ids.
    tokenizer: str | None = "runs/tokenizer"
    vocab_size: int = VOCAB_SIZE
    # The trained emotion model picks each context's class. None: the gold label conditions training (ED's labels;
    # others are `unknown`), every context is `unknown` at inference, and the reward's emotion term is dropped.
    emotion_model: str | None = "checkpoints/emotion"
    max_train_examples: int | None = None
    max_valid_examples: int | None = 1000
    # MLE pretraining (teacher forcing, loss on reply tokens)
    mle_steps: int = 4000
    mle_lr: float = 1e-3
    batch_size: int = 64
    # PPO fine-tuning: `steps` PPO steps at learning rate `lr` after the MLE steps
    steps: int = 300
    lr: float = 1e-4
    rollout_batch: int = 64  # replies sampled per PPO step
    minibatch_size: int = 16
    ppo_epochs: int = 1
    clip_epsilon: float = 0.2
    kl_coef: float = 0.05  # KL to the frozen MLE model, so reward hacking cannot drift far from language
    reward_clip: float = 2.0  # normalised rewards are clipped to [-clip, clip], as TextGAIL does
    w_emo: float = 0.5
    w_sim: float = 0.5
    reference_examples: int = 20000  # expert replies that estimate each class's reply emotion
    decoding: Decoding = field(default_factory=lambda: Decoding(max_new_tokens=30))
    eval_examples: int = 128  # valid contexts whose sampled replies' reward is reported at each evaluation
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_emo < 0 or self.w_sim < 0 or self.w_emo + self.w_sim == 0:
            raise ValueError(f"reward weights w_emo={self.w_emo}, w_sim={self.w_sim}: expected >= 0, not both 0")
        if self.rollout_batch % self.minibatch_size:
            raise ValueError(f"rollout_batch {self.rollout_batch} is not a multiple of minibatch_size "
                             f"{self.minibatch_size}")


# --- Data ------------------------------------------------------------------------------------------------------

@dataclass
class Examples:
    contexts: list[Context]
    responses: list[str]
    pairs: list[Pair]
    classes: torch.Tensor  # the conditioning class of each context
    context_probs: torch.Tensor | None  # the emotion model's distribution over each context


def prepare_examples(split: Dataset, tokenizer: PreTrainedTokenizerBase, model: Seq2Seq,
                     emotion_model: EmotionClassifier | None, limit: int | None, seed: int) -> Examples:
    """Tokenised (context, reply) pairs of a split (a seeded sample of `limit` rows) and each context's class."""
    split = seeded_subset(split, limit, seed)
    if len(split) == 0:
        raise ValueError("no trajectories to train on: the split is empty")
    rows = split.select_columns(["history", "prompt", "response", "emotion"]).to_dict()
    contexts = list(zip(rows["history"], rows["prompt"]))
    max_length = model.config.max_length
    pairs = encode_pairs(tokenizer, [(h, p, r) for (h, p), r in zip(contexts, rows["response"])], max_length,
                         max_response_tokens=max_length // 2)
    if emotion_model is None:
        return Examples(contexts, rows["response"], pairs, label_classes(model.config, rows["emotion"]), None)
    probs = context_emotions(model.config, emotion_model, contexts)
    return Examples(contexts, rows["response"], pairs, probs.argmax(dim=-1), probs)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


# --- Steps -----------------------------------------------------------------------------------------------------

def mle_loss(model: Seq2Seq, batch: dict[str, torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per reply token (teacher forcing)."""
    logp = target_logprobs(model, batch, classes)
    return -logp.sum() / batch["tgt_mask"].sum().clamp(min=1)


def optimizer_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, loss: torch.Tensor, step: int,
                   max_grad_norm: float, name: str = "loss") -> float:
    value = check_finite(loss, step, name)  # raises before the update, so no bad weights reach a checkpoint
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return value


@torch.no_grad()
def evaluate_nll(model: Seq2Seq, examples: Examples, batch_size: int = 64) -> float:
    """Mean negative log-likelihood per reply token of the expert replies (exp of it is the perplexity)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples.pairs), batch_size):
        rows = slice(start, start + batch_size)
        batch = to_device(collate_pairs(examples.pairs[rows], model.config), model.device)
        total -= target_logprobs(model, batch, examples.classes[rows].to(model.device)).sum().item()
        count += int(batch["tgt_mask"].sum())
    model.train(was_training)
    return total / max(count, 1)


RewardFn = Callable[[Sequence[str], Sequence[str], torch.Tensor], RewardTerms]


def ppo_step(model: Seq2Seq, reference: Seq2Seq, optimizer: torch.optim.Optimizer,
             tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Context], responses: Sequence[str],
             classes: torch.Tensor, reward_fn: RewardFn, normalizer: RunningMeanStd, config: RLSeq2SeqConfig,
             step: int) -> dict[str, float]:
    """Sample a reply per context, score it, and take PPO's clipped steps on the normalised rewards.

    Dropout stays off: the replies are sampled from, and their old log-probabilities taken under, the same
    deterministic policy that the first minibatch update sees, so its ratio starts at exactly 1.
    """
    model.eval()
    # Sampling reads torch's global generator, which the run seeds and checkpoints; a fixed seed would draw the
    # same noise at every step.
    rollout = generate(model, tokenizer, contexts, classes, dataclasses.replace(config.decoding, seed=None))
    terms = reward_fn(rollout.texts, responses, rollout.emotion)
    advantages = normalizer.normalize(terms.total, clip=config.reward_clip).float().to(model.device)
    batch = to_device(collate_pairs(rollout.pairs, model.config), model.device)
    classes = rollout.emotion.to(model.device)
    with torch.no_grad():
        old_logp = target_logprobs(model, batch, classes)
        ref_logp = target_logprobs(reference, batch, classes)
    totals: Counter = Counter()
    n_updates = 0
    for _ in range(config.ppo_epochs):
        for rows in torch.randperm(len(contexts)).split(config.minibatch_size):
            rows = rows.to(model.device)
            minibatch = {k: v[rows] for k, v in batch.items()}
            new_logp = target_logprobs(model, minibatch, classes[rows])
            out = ppo_loss(new_logp, old_logp[rows], ref_logp[rows], minibatch["tgt_mask"], advantages[rows],
                           epsilon=config.clip_epsilon, kl_coef=config.kl_coef)
            totals["ppo_loss"] += optimizer_step(model, optimizer, out.loss, step, config.max_grad_norm, "PPO loss")
            totals["kl"] += out.kl.item()
            totals["clip_fraction"] += out.clip_fraction.item()
            totals["approx_kl"] += out.approx_kl.item()
            n_updates += 1
    metrics = {k: v / n_updates for k, v in totals.items()}
    lengths = batch["tgt_mask"].sum(dim=1).float()
    return {**metrics, "reward": terms.total.mean().item(), "emotion_fit": terms.emotion_fit.mean().item(),
            "similarity": terms.similarity.mean().item(), "reply_tokens": lengths.mean().item()}


@torch.no_grad()
def evaluate_reward(model: Seq2Seq, tokenizer: PreTrainedTokenizerBase, examples: Examples, reward_fn: RewardFn,
                    decoding: Decoding, limit: int) -> RewardTerms:
    """Reward of replies sampled with a fixed seed for the first `limit` contexts: comparable across steps."""
    was_training = model.training
    model.eval()
    contexts, responses = examples.contexts[:limit], examples.responses[:limit]
    rollout = generate(model, tokenizer, contexts, examples.classes[:limit], dataclasses.replace(decoding, seed=0))
    model.train(was_training)
    return reward_fn(rollout.texts, responses, rollout.emotion)


# --- The run ---------------------------------------------------------------------------------------------------

def _tokenizer(config: RLSeq2SeqConfig, train: Dataset) -> PreTrainedTokenizerBase:
    if config.tokenizer is not None:
        if not Path(config.tokenizer).is_dir():
            raise FileNotFoundError(f"tokenizer not found: {config.tokenizer} (make it with `python -m core tokenizer "
                                    f"--out {config.tokenizer}`, or set tokenizer=null to train one on the training "
                                    "split)")
        return load_tokenizer(config.tokenizer)
    texts = train.select_columns(["prompt", "response"]).to_dict()
    return train_tokenizer(texts["prompt"] + texts["response"], vocab_size=config.vocab_size)


def _reply_prior(examples: Examples, emotion_model: EmotionClassifier, limit: int, seed: int) -> torch.Tensor:
    rows = list(range(len(examples.responses)))
    if len(rows) > limit:
        rows = sorted(random.Random(seed).sample(rows, limit))
    reply_probs = emotion_model.predict_proba([examples.responses[i] for i in rows]).float().cpu()
    return reply_emotion_prior(examples.context_probs[rows], reply_probs)


def export_seq2seq(model: Seq2Seq, tokenizer: PreTrainedTokenizerBase, emotion_model: EmotionClassifier | None,
                   card: ModelCard, out_dir: str | Path, dtype: str | None = None) -> Path:
    """The directory `load_responder` reads: weights (stored as `dtype`), tokenizer, the emotion model that picks
    classes, card."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, dtype)
        tokenizer.save_pretrained(tmp)
        if emotion_model is not None:
            emotion_model.save_pretrained(tmp / EMOTION_DIR)
        card.save(tmp)
        write_checksums(tmp)  # last, so the listing covers the emotion model's weights too

    return write_atomically(Path(out_dir).resolve(), "model", write)


class RLSeq2SeqTrainer:
    """Steps 0 .. mle_steps-1 are MLE (teacher forcing), the rest PPO against the frozen MLE model."""

    algorithm = ALGORITHM
    schedule = None

    def __init__(self, config: RLSeq2SeqConfig, dataset: DatasetDict | None, accelerator: Accelerator):
        if config.emotion_model is not None and not Path(config.emotion_model).is_dir():
            raise FileNotFoundError(f"emotion model not found: {config.emotion_model} (train it with "
                                    "`python -m core train emotion`, or set emotion_model=null to condition on "
                                    "the gold labels and drop the reward's emotion term)")
        self.config, self.device = config, accelerator.device
        data = dataset if dataset is not None else load_trajectories(config.data)
        found = latest_checkpoint(config.run_dir) if config.resume else None
        self.tokenizer = _tokenizer(config, data["train"]) if found is None else load_tokenizer(found / "tokenizer")
        self.emotion_model = None
        if config.emotion_model is not None:
            self.emotion_model = EmotionClassifier.from_pretrained(config.emotion_model, self.device)
        else:
            print("rl_seq2seq: no emotion model; training is conditioned on the gold emotion labels, every context "
                  "is `unknown` at inference, and the reward is unigram F1 alone")
        emotions = ED_EMOTIONS if self.emotion_model is None else self.emotion_model.labels
        self.model = build_seq2seq(config.model, self.tokenizer, emotions).to(self.device)
        began = time.time()
        self.train = prepare_examples(data["train"], self.tokenizer, self.model, self.emotion_model,
                                      config.max_train_examples, config.seed)
        self.valid = prepare_examples(data["valid"], self.tokenizer, self.model, self.emotion_model,
                                      config.max_valid_examples, config.seed)
        print(f"rl_seq2seq: {len(self.train.pairs):,} training and {len(self.valid.pairs):,} validation pairs encoded"
              f"{' and classified' if self.emotion_model is not None else ''} in {time.time() - began:.0f}s")
        prior = None
        if self.emotion_model is not None:
            prior = _reply_prior(self.train, self.emotion_model, config.reference_examples, config.seed)
        self.reward_fn = Seq2SeqReward(config.w_emo, config.w_sim, self.emotion_model, prior)
        self.optimizers = {"mle": torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.mle_lr),
                           "ppo": torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr)}
        self.normalizer = RunningMeanStd()
        self.reference: Seq2Seq | None = None  # the frozen MLE model, from the first PPO step on
        # Batches are a pure function of the step, so a resumed run reads exactly those of an uninterrupted one.
        self.mle_batches = Batches(len(self.train.pairs), config.batch_size, config.seed)
        self.ppo_batches = Batches(len(self.train.pairs), config.rollout_batch, config.seed + 1)
        self.total_steps = config.mle_steps + config.steps
        self.milestones = {config.mle_steps}
        self.start_info = {"train_examples": len(self.train.pairs), "reward": self.reward_fn.formula}
        self.phases: dict[str, dict] = {}  # each phase's last evaluation, for the card

    def parts(self) -> dict[str, dict]:
        models = {"model": self.model} if self.reference is None else {"model": self.model, "reference": self.reference}
        return dict(models=models, optimizers=self.optimizers)

    def step(self, step: int) -> dict[str, float]:
        config, model, train = self.config, self.model, self.train
        if step < config.mle_steps:
            model.train()
            rows = self.mle_batches(step)
            batch = to_device(collate_pairs([train.pairs[i] for i in rows], model.config), self.device)
            loss = mle_loss(model, batch, train.classes[rows].to(self.device))
            return {"mle_loss": optimizer_step(model, self.optimizers["mle"], loss, step + 1, config.max_grad_norm)}
        if self.reference is None:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        rows = self.ppo_batches(step - config.mle_steps)
        contexts, responses = [train.contexts[i] for i in rows], [train.responses[i] for i in rows]
        return ppo_step(model, self.reference, self.optimizers["ppo"], self.tokenizer, contexts, responses,
                        train.classes[rows], self.reward_fn, self.normalizer, config, step + 1)

    def evaluate(self, step: int) -> dict[str, float]:
        nll = evaluate_nll(self.model, self.valid)
        result = {"valid_nll": nll, "valid_perplexity": float(torch.tensor(nll).exp())}
        if step >= self.config.mle_steps:
            terms = evaluate_reward(self.model, self.tokenizer, self.valid, self.reward_fn, self.config.decoding,
                                    self.config.eval_examples)
            result |= {"valid_reward": terms.total.mean().item(), "valid_emotion_fit": terms.emotion_fit.mean().item(),
                       "valid_similarity": terms.similarity.mean().item()}
        phase = "mle" if step <= self.config.mle_steps else "ppo"
        self.phases[phase] = {**result, "step": step}
        tqdm.write(f"step {step} ({phase}): " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
        return result

    def loop_state(self) -> dict:
        return {"normalizer": self.normalizer.state_dict(), "phases": self.phases}

    def restore(self, path: Path) -> dict:
        if (path / "reference").is_dir():
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        state = load_checkpoint(path, **self.parts())
        self.normalizer.load_state_dict(state["normalizer"])
        self.phases = state["phases"]
        return state

    def card(self, step: int) -> ModelCard:
        return ModelCard(name=self.config.name, algorithm=ALGORITHM, kind="seq2seq",
                         data=", ".join(self.config.data.sources), steps=step, metrics=dict(self.phases),
                         config={"reward": self.reward_fn.formula})

    def export(self, out: Path, card: ModelCard) -> None:
        export_seq2seq(self.model.eval(), self.tokenizer, self.emotion_model, card, out, self.config.export_dtype)


def train_rl_seq2seq(config: RLSeq2SeqConfig, callbacks: Sequence[Callback] = (),
                     dataset: DatasetDict | None = None) -> Path:
    """MLE pretraining then PPO fine-tuning; returns the exported model directory.

    `dataset`: trajectories with the contract's columns (default: `load_trajectories(config.data)`).
    """
    return train(config, lambda accelerator: RLSeq2SeqTrainer(config, dataset, accelerator), callbacks)
