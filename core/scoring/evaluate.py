"""Generate replies to every test trajectory with every model, save them, and score them per turn bucket.

Generation and scoring are separate: the replies (and each model's log-likelihood of the expert reply) go to
`<out>/generations.jsonl`, so `rescore=True` recomputes every metric from that file without loading a model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from core import paths
from core.models.generator import Context, Decoding
from core.models.card import CARD_FILE, ModelCard, list_models
from core.models.storage import resolve_device
from core.registry import load_responder
from core.scoring import metrics
from core.scoring.embedding import EncoderUnavailable, SentenceEncoder, load_encoder, pairwise_cosine

GENERATIONS = "generations.jsonl"
GENERATIONS_META = "generations_meta.json"
EXPERT = "expert reply"  # reference row: the reply-only metrics of the expert replies themselves
REQUIRED_COLUMNS = ("source", "bucket", "history", "prompt", "response")

# name -> (label, better): "higher", "lower" or "" where neither is better
METRICS: dict[str, tuple[str, str]] = {
    "ppl_token": ("Perplexity per token", "lower"),
    "ppl_word": ("Perplexity per word", "lower"),
    "bleu": ("BLEU", "higher"),
    "bleu1": ("BLEU-1", "higher"),
    "bleu2": ("BLEU-2", "higher"),
    "embed_sim": ("Embedding similarity", "higher"),
    "distinct1": ("Distinct-1 (%)", "higher"),
    "distinct2": ("Distinct-2 (%)", "higher"),
    "length": ("Reply length (words)", ""),
    "emotion_acc": ("Emotion accuracy (%)", "higher"),
    "disc": ("Discriminator score", "higher"),
}
SEED_FREE = ("ppl_token", "ppl_word")  # score the expert reply, so every sampling seed gives the same value

EmotionReader = Callable[[list[str]], Sequence[str]]  # replies -> emotion labels
DiscriminatorScore = Callable[[list[Context], list[str]], Any]  # (contexts, replies) -> one score each
Progress = Callable[[float, str], Any]  # (fraction done, message), e.g. gradio.Progress
Indices = np.ndarray  # example rows: a turn bucket, or a bootstrap resample (with repeats)
MetricFn = Callable[[Indices], float]
Runs = dict[tuple[str, int], dict[str, MetricFn]]  # (model, seed index) -> metric -> its value on any rows


@dataclass
class EvalConfig:
    models: list[str] = field(default_factory=list)  # model dirs, folders of them, or names in checkpoints_dir
    checkpoints_dir: str | None = None
    data_dir: str | None = None
    split: str = "test"
    sources: list[str] = field(default_factory=lambda: ["empatheticdialogues", "dailydialog"])
    seeds: int = 3  # run s samples with seed s; greedy decoding makes one run
    decoding: Decoding = field(default_factory=Decoding)  # the same for every model
    max_examples: int | None = None  # a fixed random subset (seed 0) of the split, for quick runs
    batch_size: int = 64
    out: str = "results"
    encoder: str | None = None  # sentence encoder for embed_sim; None: the offline all-MiniLM-L6-v2
    embedding: bool = True
    device: str = "auto"
    rescore: bool = False  # score <out>/generations.jsonl again instead of generating
    emotion_model: str | None = None  # emotion classifier dir, for emotion accuracy
    discriminator: str | None = None  # a discriminator dir, or a model dir with a discriminator/ subfolder
    bootstrap: int = 1000  # paired bootstrap resamples for the quality bar's intervals (core.scoring.compare); 0: none


@dataclass
class EvalResults:
    scores: pd.DataFrame  # one row per model, seed, bucket, metric: value
    records: list[dict]  # the per-example generations, as in generations.jsonl
    meta: dict[str, Any]  # settings, models, example counts, timings, notes
    runs: Runs = field(default_factory=dict)  # each run's metrics as functions of example rows (not saved)

    def table(self) -> pd.DataFrame:
        """Mean and std over seeds: one row per model, metric, bucket."""
        rows = []
        for (model, metric, bucket), group in self.scores.groupby(["model", "metric", "bucket"], sort=False):
            mean, std = metrics.mean_std(group["value"].tolist())
            rows.append({"model": model, "metric": metric, "bucket": bucket, "mean": mean, "std": std,
                         "seeds": int(group["value"].notna().sum())})
        return pd.DataFrame(rows, columns=["model", "metric", "bucket", "mean", "std", "seeds"])


def evaluate(config: EvalConfig, progress: Progress | None = None, data=None, emotion: EmotionReader | None = None,
             emotion_labels: Sequence[str] | None = None, discriminator: DiscriminatorScore | None = None
             ) -> EvalResults:
    """Generate (or, with `config.rescore`, reload) every model's replies and score them.

    `data`: a DatasetDict or Dataset of trajectories (default: core.data from `config.data_dir`).
    `emotion`: reads an emotion from each reply, compared with the gold emotion (`emotion_labels`: the labels
    it can predict; other gold labels are not counted). `discriminator`: scores (context, reply) pairs; one
    fixed discriminator for every model, so its column compares them.
    """
    out = Path(config.out)
    started = time.perf_counter()
    device = resolve_device(config.device)
    if emotion is None and config.emotion_model:
        from core.models.emotion import EmotionClassifier

        classifier = EmotionClassifier.from_pretrained(config.emotion_model, device=device)
        emotion, emotion_labels = classifier.predict, classifier.labels
    if discriminator is None and config.discriminator:
        from core.models.discriminator import Discriminator, discriminator_dir

        discriminator = Discriminator.from_pretrained(discriminator_dir(config.discriminator), device=device).score
    if config.rescore:
        records, meta = read_generations(out, config.models)
    else:
        rows = load_rows(config, data)
        cards = resolve_models(config.models, config.checkpoints_dir)
        records, meta = generate_all(cards, rows, config, progress)
        write_generations(out, records, meta)
    encoder, notes = _encoder(config)
    score_started = time.perf_counter()
    scores, runs = score_records(records, meta["models"], meta["seeds"], emotion=emotion,
                                 emotion_labels=emotion_labels, discriminator=discriminator, encoder=encoder,
                                 batch_size=config.batch_size)
    if emotion is None:
        notes.append("emotion_acc left out: no emotion classifier given")
    if discriminator is None:
        notes.append("disc left out: no discriminator given")
    meta = {**meta, "notes": meta.get("notes", []) + notes, "scoring_s": time.perf_counter() - score_started,
            "wall_s": time.perf_counter() - started, "rescored": config.rescore, "bootstrap": config.bootstrap,
            "bleu_signature": metrics.bleu_signature()}
    results = EvalResults(scores=scores, records=records, meta=meta, runs=runs)
    print(speed_line(meta))
    return results


def speed_line(meta: dict) -> str:
    """The benchmark figure: test examples per second end to end (every model and seed), and its parts."""
    replies = meta["examples"] * len(meta["models"]) * len(meta["seeds"])
    if meta.get("rescored"):
        return f"rescored {replies:,} saved replies in {meta['wall_s']:.1f} s (scoring {meta['scoring_s']:.1f} s)"
    generation = meta["generation_s"]
    return (f"evaluated {meta['examples']:,} examples x {len(meta['models'])} model(s) x {len(meta['seeds'])} "
            f"seed(s) = {replies:,} replies in {meta['wall_s']:.1f} s wall on {meta['device']}: "
            f"{meta['examples'] / meta['wall_s']:.2f} examples/s end to end; generation + perplexity "
            f"{generation:.1f} s ({replies / max(generation, 1e-9):.2f} replies/s), scoring {meta['scoring_s']:.1f} s")


# --- inputs ----------------------------------------------------------------------------------------------

def load_rows(config: EvalConfig, data=None) -> list[dict]:
    """The split's trajectories from the chosen sources as plain dicts, subsampled to `max_examples`."""
    if data is None:
        from core.data import DataConfig, load_trajectories

        data = load_trajectories(DataConfig(data_dir=config.data_dir, sources=tuple(config.sources)))
    if hasattr(data, "keys"):  # a DatasetDict
        if config.split not in data:
            raise ValueError(f"split {config.split!r} not in the data; it has {', '.join(data.keys())}")
        data = data[config.split]
    missing = [c for c in REQUIRED_COLUMNS if c not in data.column_names]
    if missing:
        raise ValueError(f"trajectories lack column(s) {', '.join(missing)}; have {', '.join(data.column_names)}")
    wanted = set(config.sources)
    keep = [i for i, source in enumerate(data["source"]) if source in wanted]
    if config.max_examples is not None and config.max_examples < len(keep):
        keep = sorted(pd.Series(keep).sample(n=config.max_examples, random_state=0).tolist())
    if not keep:
        raise ValueError(f"no {config.split} trajectories from sources {sorted(wanted)}")
    return data.select(keep).to_list()


def resolve_models(specs: Sequence[str], checkpoints_dir: str | None = None) -> list[ModelCard]:
    """Model cards for each spec: a model dir, a folder of model dirs, or a model name (card name or dir name)
    in the checkpoints dir. No specs: every model in the checkpoints dir."""
    root = paths.checkpoints_dir(checkpoints_dir)
    known = list_models(root)
    if not specs:
        if not known:
            raise ValueError(f"no models given and none found in {root}")
        return known
    cards = []
    for spec in specs:
        path = Path(spec)
        if (path / CARD_FILE).is_file():
            cards.append(ModelCard.load(path))
        elif path.is_dir() and list_models(path):
            cards.extend(list_models(path))
        else:
            match = [c for c in known if spec in (c.name, Path(c.path).name)]
            if not match:
                names = ", ".join(sorted(c.name for c in known)) or "none"
                raise ValueError(f"model {spec!r} is neither a model directory ({CARD_FILE}) nor a model in {root} "
                                 f"(known: {names})")
            cards.append(match[0])
    return cards


def _labels(cards: Sequence[ModelCard]) -> list[str]:
    names = [c.name for c in cards]
    return [n if names.count(n) == 1 else f"{n} ({Path(c.path).name})" for n, c in zip(names, cards)]


def _encoder(config: EvalConfig) -> tuple[SentenceEncoder | None, list[str]]:
    if not config.embedding:
        return None, ["embed_sim left out: embedding similarity turned off"]
    try:
        return load_encoder(config.encoder, resolve_device(config.device)), []
    except EncoderUnavailable as error:
        return None, [f"embed_sim left out: {error}"]


# --- generation ------------------------------------------------------------------------------------------

def generate_all(cards: Sequence[ModelCard], rows: list[dict], config: EvalConfig,
                 progress: Progress | None = None) -> tuple[list[dict], dict]:
    """Every model's replies (one per seed) and log-likelihood of the expert reply, for every row."""
    decoding = config.decoding
    seeds = list(range(config.seeds)) if decoding.do_sample else [0]
    labels = _labels(cards)
    device = resolve_device(config.device)
    records = [{"index": i, "source": r["source"], "conv_id": r.get("conv_id", ""), "turn": r.get("turn", -1),
                "bucket": r["bucket"], "emotion": r.get("emotion", ""), "history": list(r["history"]),
                "prompt": r["prompt"], "expert": r["response"], "replies": {}, "expert_score": {}}
               for i, r in enumerate(rows)]
    contexts = [(r["history"], r["prompt"]) for r in records]
    # Rows of similar length share a batch, so little of each batch is padding.
    order = sorted(range(len(rows)), key=lambda i: sum(map(len, records[i]["history"])) + len(records[i]["prompt"]))
    bar = _Bar(len(rows) * len(cards) * (len(seeds) + 1), progress)
    started = time.perf_counter()
    for label, card in zip(labels, cards):
        responder = load_responder(card.path, device)
        for seed in seeds:
            replies = [""] * len(rows)
            for start in range(0, len(order), config.batch_size):
                batch = order[start:start + config.batch_size]
                bar.describe(f"{label}: seed {seed}")
                # A distinct seed per batch: one shared seed would give every batch the same random draws.
                texts = responder.respond_batch([contexts[i] for i in batch],
                                                replace(decoding, seed=seed * 1_000_003 + start))
                for i, text in zip(batch, texts):
                    replies[i] = text
                bar.update(len(batch))
            for record, reply in zip(records, replies):
                record["replies"].setdefault(label, []).append(reply)
        bar.describe(f"{label}: perplexity")
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            scored = responder.score_batch([contexts[i] for i in batch], [records[i]["expert"] for i in batch])
            for i, score in zip(batch, scored):
                records[i]["expert_score"][label] = asdict(score)
            bar.update(len(batch))
        del responder
    bar.close()
    meta = {"split": config.split, "sources": list(config.sources), "examples": len(rows), "seeds": seeds,
            "decoding": {k: v for k, v in asdict(decoding).items() if k != "seed"}, "batch_size": config.batch_size,
            "device": str(device), "models": [{"name": label, "path": c.path, "algorithm": c.algorithm}
                                         for label, c in zip(labels, cards)],
            "generation_s": time.perf_counter() - started,
            "notes": [] if decoding.do_sample else ["greedy decoding is deterministic: one run, no seeds"]}
    return records, meta


class _Bar:
    """tqdm over the test set, mirrored to an optional (fraction, message) callback such as gradio.Progress."""

    def __init__(self, total: int, progress: Progress | None):
        self.tqdm = tqdm(total=total, unit="ex", desc="evaluate")
        self.progress, self.done, self.total, self.message = progress, 0, max(total, 1), "evaluate"

    def describe(self, message: str) -> None:
        self.tqdm.set_description(message, refresh=False)
        self.message = message

    def update(self, n: int) -> None:
        self.tqdm.update(n)
        self.done += n
        if self.progress is not None:
            self.progress(self.done / self.total, self.message)

    def close(self) -> None:
        self.tqdm.close()


def write_generations(out: Path, records: list[dict], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / GENERATIONS, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / GENERATIONS_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def read_generations(out: Path, models: Sequence[str] = ()) -> tuple[list[dict], dict]:
    """Saved generations, optionally restricted to the named models."""
    file, meta_file = out / GENERATIONS, out / GENERATIONS_META
    for path in (file, meta_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the evaluation without --rescore first")
    meta = json.loads(meta_file.read_text())
    with open(file, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    if models:
        saved = {m["name"]: m for m in meta["models"]}
        unknown = [m for m in models if m not in saved]
        if unknown:
            raise ValueError(f"{file} has no replies from {', '.join(unknown)}; it has {', '.join(saved)}")
        meta = {**meta, "models": [saved[m] for m in models]}
    return records, meta


# --- scoring ---------------------------------------------------------------------------------------------

def score_records(records: list[dict], models: Sequence[dict], seeds: Sequence[int], *,
                  emotion: EmotionReader | None = None, emotion_labels: Sequence[str] | None = None,
                  discriminator: DiscriminatorScore | None = None, encoder: SentenceEncoder | None = None,
                  batch_size: int = 64) -> tuple[pd.DataFrame, Runs]:
    """Every metric for every model, seed and bucket (plus the expert replies' own reply-only metrics), and each
    run's metrics as functions of example rows, so that a paired bootstrap (core.scoring.compare) can recompute
    them on resamples. The costly parts (models, tokenising) run once per run; a function of rows only sums."""
    groups = metrics.bucket_indices([r["bucket"] for r in records])
    experts = [r["expert"] for r in records]
    gold = [r["emotion"] for r in records]
    contexts = [(r["history"], r["prompt"]) for r in records]
    expert_vectors = encoder.encode(experts) if encoder is not None else None

    def mean_of(values: Sequence[float]) -> MetricFn:
        column = np.asarray(values, dtype=float)
        return lambda rows: float(column[rows].mean()) if len(rows) else math.nan

    def reply_only(replies: list[str]) -> dict[str, MetricFn]:
        tokens = [metrics.words(reply) for reply in replies]
        grams = {n: [metrics.ngrams(t, n) for t in tokens] for n in (1, 2)}
        fns = {f"distinct{n}": lambda rows, n=n: metrics.distinct_of_ngrams(grams[n][i] for i in rows) for n in (1, 2)}
        fns["length"] = mean_of(metrics.word_counts(replies))
        if discriminator is not None:
            fns["disc"] = mean_of(_batched_scores(discriminator, contexts, replies, batch_size))
        if emotion is not None:
            predicted = [label for s in range(0, len(replies), batch_size)
                         for label in emotion(replies[s:s + batch_size])]
            fns["emotion_acc"] = lambda rows: metrics.emotion_accuracy(
                [predicted[i] for i in rows], [gold[i] for i in rows], emotion_labels)
        return fns

    def with_expert(replies: list[str], scores: list[dict]) -> dict[str, MetricFn]:
        fns = reply_only(replies)
        if expert_vectors is not None:
            fns["embed_sim"] = mean_of(pairwise_cosine(encoder.encode(replies), expert_vectors))
        for order in (4, 1, 2):
            statistics = metrics.bleu_statistics(replies, experts, order)
            fns[f"bleu{'' if order == 4 else order}"] = lambda rows, st=statistics, order=order: (
                metrics.bleu_from_statistics(st[rows], order))
        logprob = np.asarray([s["logprob"] for s in scores], dtype=float)
        for name, unit in (("ppl_token", "n_tokens"), ("ppl_word", "n_words")):
            count = np.asarray([s[unit] for s in scores], dtype=float)
            fns[name] = lambda rows, count=count: metrics.perplexity(float(logprob[rows].sum()),
                                                                     float(count[rows].sum()))
        return fns

    rows_out: list[dict] = []

    def add(model: str, seed: int, fns: dict[str, MetricFn]) -> None:
        for bucket, rows_in in groups.items():
            rows = np.asarray(rows_in, dtype=np.int64)
            rows_out.extend({"model": model, "seed": seed, "bucket": bucket, "metric": name, "value": fn(rows)}
                            for name, fn in fns.items())

    runs: Runs = {}
    for model, seed_index, seed in tqdm([(m["name"], i, s) for m in models for i, s in enumerate(seeds)],
                                        desc="scoring", unit="run"):
        replies = [r["replies"][model][seed_index] for r in records]
        runs[model, seed_index] = with_expert(replies, [r["expert_score"][model] for r in records])
        add(model, seed, runs[model, seed_index])
    add(EXPERT, 0, reply_only(experts))
    return pd.DataFrame(rows_out, columns=["model", "seed", "bucket", "metric", "value"]), runs


@torch.no_grad()
def _batched_scores(score: DiscriminatorScore, contexts: list[Context], replies: list[str], size: int) -> list[float]:
    values: list[float] = []
    for start in range(0, len(replies), size):
        batch = score(contexts[start:start + size], replies[start:start + size])
        values.extend(torch.as_tensor(batch).detach().float().reshape(-1).cpu().tolist())
    if len(values) != len(replies):
        raise ValueError(f"the discriminator gave {len(values)} scores for {len(replies)} replies")
    return values
