"""Training the emotion classifier (core/models/emotion.py): keep the epoch with the best valid accuracy, report
test accuracy. A frozen encoder's features are computed once, then only the head trains (seconds per epoch)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.data import DataConfig, load_trajectories
from core.engine.callbacks import CallbackList, MetricsLogger, time_budget
from core.models.emotion import LABEL_SETS, LABEL_SOURCE, EmotionClassifier, EmotionConfig


@dataclass
class EmotionTrainConfig:
    model: EmotionConfig = field(default_factory=EmotionConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(sources=("empatheticdialogues",)))
    output_dir: str = "checkpoints/emotion"
    run_dir: str = "runs/emotion"  # metrics.jsonl
    resume: bool = False  # a finished model in output_dir is kept as it is (training takes minutes, no checkpoints)
    use_situations: bool = True  # ED only: the situation text, labelled with its conversation's emotion
    max_train_examples: int | None = None
    max_eval_examples: int | None = None  # a seeded subset of valid and test each (quick runs)
    epochs: int = 40
    batch_size: int = 64
    max_seconds: float | None = None  # a time budget, setup included: no epoch starts after it (the best one is kept)
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0


def labelled_texts(split, labels: str, use_situations: bool = True) -> tuple[list[str], list[int], list[str]]:
    """(text, label index, kind) from a trajectory split: every prompt (ED: the speaker's turns) with its emotion,
    plus each ED conversation's situation once; kind is `situation`, `first_turn` or `later_turn`."""
    names = LABEL_SETS[labels]
    index = {name: i for i, name in enumerate(names)}
    texts, targets, kinds, seen = [], [], [], set()
    for row in split.select_columns(["source", "conv_id", "turn", "prompt", "emotion", "situation"]):
        if row["source"] != LABEL_SOURCE[labels] or row["emotion"] not in index:
            continue
        texts.append(row["prompt"]), targets.append(index[row["emotion"]])
        kinds.append("first_turn" if row["turn"] == 0 else "later_turn")
        if use_situations and row["situation"] and row["conv_id"] not in seen:
            seen.add(row["conv_id"])
            texts.append(row["situation"]), targets.append(index[row["emotion"]]), kinds.append("situation")
    return texts, targets, kinds


def accuracy_by_kind(predicted: torch.Tensor, targets: Sequence[int], kinds: Sequence[str]) -> dict[str, float]:
    correct = (predicted.cpu() == torch.tensor(targets)).float()
    result = {"all": correct.mean().item()}
    for kind in sorted(set(kinds)):
        rows = torch.tensor([k == kind for k in kinds])
        result[kind] = correct[rows].mean().item()
    return result


def train_emotion(config: EmotionTrainConfig, callbacks: Sequence = (), dataset=None) -> Path:
    """Train the classifier, keep the epoch with the best valid accuracy, report test accuracy; returns its dir.

    A frozen encoder's features are computed once, then only the head trains (seconds per epoch).
    `dataset`: trajectories with the contract's columns (default: built from `config.data`).
    """
    if config.resume and (Path(config.output_dir) / "metrics.json").is_file():
        return Path(config.output_dir)
    callbacks = CallbackList([MetricsLogger(config.run_dir), *time_budget(config.max_seconds), *callbacks])
    torch.manual_seed(config.seed)
    data = dataset if dataset is not None else load_trajectories(config.data)
    splits = {name: labelled_texts(data[name], config.model.labels, config.use_situations)
              for name in ("train", "valid", "test")}
    for name, limit in (("train", config.max_train_examples), ("valid", config.max_eval_examples),
                        ("test", config.max_eval_examples)):
        if limit is not None and len(splits[name][0]) > limit:
            # One generator per split, so a split's subset does not depend on the other limits.
            keep = sorted(random.Random(f"{config.seed}:{name}").sample(range(len(splits[name][0])), limit))
            splits[name] = tuple([column[i] for i in keep] for column in splits[name])
    texts, targets, _ = splits["train"]
    if not texts:
        raise ValueError(f"no labelled {config.model.labels} texts in the training split of {config.data.sources}")

    model = EmotionClassifier(config.model)
    frozen = config.model.encoder.freeze and not config.model.encoder.train_top_layers  # fixed features
    start = time.time()
    if frozen:
        cached = {name: model.features(split[0]) for name, split in splits.items()}
        print(f"emotion: encoded {sum(len(c) for c in cached.values()):,} texts in {time.time() - start:.0f}s")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    y = torch.tensor(targets)

    def predict(name: str) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            if frozen:
                return model.head(cached[name]).argmax(-1)
            return model.predict_proba(splits[name][0]).argmax(-1)

    best, best_state, step = -1.0, None, 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(texts))
        for batch in order.split(config.batch_size):
            logits = model.head(cached["train"][batch]) if frozen else model.logits([texts[i] for i in batch])
            loss = nn.functional.cross_entropy(logits, y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        valid = accuracy_by_kind(predict("valid"), splits["valid"][1], splits["valid"][2])["all"]
        callbacks.on_step(step, {"epoch": epoch + 1, "loss": loss.item(), "valid_accuracy": valid})
        if valid > best:
            best, best_state = valid, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if callbacks.should_stop():
            break
    model.load_state_dict(best_state)
    test = accuracy_by_kind(predict("test"), splits["test"][1], splits["test"][2])
    print(f"emotion ({config.model.labels}, encoder {config.model.encoder.name_or_path}): best valid accuracy "
          f"{best:.3f}; test accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in test.items()))
    out = model.save_pretrained(config.output_dir)
    (out / "metrics.json").write_text(json.dumps(
        {"valid_accuracy": best, "test_accuracy": test, "train_examples": len(texts),
         "wall_time_s": time.time() - start}, indent=2) + "\n")
    return out
