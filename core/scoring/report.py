"""Write evaluation results: a Table-2-shaped Markdown table and CSV, Figure-5/6-style plots, Table-3-style
example replies, a JSON summary, and the quality bar (EmpathyGAIL against GPT-2+MLE, core.scoring.compare)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from core.scoring.compare import bar_json, bar_markdown, pairs, quality_bar  # noqa: E402
from core.scoring.evaluate import EXPERT, METRICS, SEED_FREE, EvalResults  # noqa: E402
from core.data.records import BUCKETS  # noqa: E402
from core.scoring.metrics import ALL  # noqa: E402

COLUMNS = {"1": "1 Turn", "2": "2 Turn", "3+": "3+ Turn", ALL: "All"}
ARROWS = {"higher": " ↑", "lower": " ↓", "": ""}


def write_report(results: EvalResults, out: str | Path, n_examples: int = 6, seed: int = 0) -> dict[str, Path]:
    """Write every report file into `out`; returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = results.table()
    files = {"table_md": out / "table.md", "table_csv": out / "table.csv", "per_seed_csv": out / "per_seed.csv",
             "perplexity_png": out / "perplexity_by_turns.png", "bleu_png": out / "bleu_by_turns.png",
             "examples_md": out / "examples.md", "summary_json": out / "summary.json"}
    resamples = results.meta.get("bootstrap", 1000)
    bars = {pair: quality_bar(results, *pair, resamples=resamples) for pair in pairs(results)}
    files["table_md"].write_text(markdown_table(table, results.meta, bucket_sizes(results.records)) + "".join(
        "\n" + bar_markdown(verdicts, resamples, *pair) for pair, verdicts in bars.items()))
    if bars:
        files["quality_bar_json"] = out / "quality_bar.json"
        files["quality_bar_json"].write_text(json.dumps(_finite(
            [{"candidate": c, "baseline": b, "verdicts": bar_json(v)} for (c, b), v in bars.items()]), indent=2) + "\n")
    wide_table(table).to_csv(files["table_csv"], index=False)
    results.scores.to_csv(files["per_seed_csv"], index=False)
    plot_by_turns(table, [("ppl_token", "per token"), ("ppl_word", "per word")],
                  "Perplexity of the expert reply (the same for every sampling seed)", files["perplexity_png"])
    plot_by_turns(table, [("bleu", "BLEU"), ("bleu2", "BLEU-2")], "BLEU (sacrebleu, 0-100, higher is better)",
                  files["bleu_png"])
    files["examples_md"].write_text(examples_markdown(results, n_examples, seed))
    summary = {"meta": results.meta, "bucket_sizes": bucket_sizes(results.records), "results": nested(table)}
    files["summary_json"].write_text(json.dumps(_finite(summary), indent=2, ensure_ascii=False) + "\n")
    return files


def bucket_sizes(records: list[dict]) -> dict[str, int]:
    counts = Counter(r["bucket"] for r in records)
    return {**{b: counts.get(b, 0) for b in BUCKETS}, ALL: len(records)}


def _metric_order(table: pd.DataFrame) -> list[str]:
    present = set(table["metric"])
    return [m for m in METRICS if m in present]


def _model_order(table: pd.DataFrame) -> list[str]:
    models = list(dict.fromkeys(table["model"]))
    return [m for m in models if m != EXPERT] + ([EXPERT] if EXPERT in models else [])


def _cell(mean: float, std: float, seeds: int, metric: str) -> str:
    if math.isnan(mean):
        return "—"
    if metric in SEED_FREE or seeds < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def markdown_table(table: pd.DataFrame, meta: dict, sizes: dict[str, int]) -> str:
    """Table 2 of the method in shape: metric, model, then one column per turn bucket and one for all."""
    decoding = ", ".join(f"{k}={v}" for k, v in meta["decoding"].items())
    seeds = ", ".join(map(str, meta["seeds"]))
    lines = [
        f"# Results: {meta['split']} split of {', '.join(meta['sources'])}",
        "",
        f"{sizes[ALL]:,} examples ({', '.join(f'{COLUMNS[b]}: {sizes[b]:,}' for b in BUCKETS)}). "
        f"Decoding, the same for every model: {decoding}; sampling seeds {seeds}.",
        "",
        "Each cell is the mean ± sample standard deviation over the sampling seeds (decoding randomness only). "
        "Perplexity scores the expert reply, so it does not depend on the seed and has no ±; nor do cells "
        "from a single run. "
        "BLEU is a similarity on sacrebleu's 0-100 scale, higher is better "
        f"(`{meta['bleu_signature']}`); BLEU-1/2 are cumulative. Distinct-n and emotion accuracy are percentages. "
        f"`{EXPERT}` rows describe the expert replies themselves. ↑ higher is better, ↓ lower is better.",
        "",
        "| Metric | Model | " + " | ".join(COLUMNS.values()) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |",
    ]
    cells = {(r.model, r.metric, r.bucket): (r.mean, r.std, r.seeds) for r in table.itertuples()}
    for metric in _metric_order(table):
        label, better = METRICS[metric]
        for model in _model_order(table):
            if not any((model, metric, b) in cells for b in COLUMNS):
                continue
            values = [_cell(*cells.get((model, metric, b), (math.nan, math.nan, 0)), metric) for b in COLUMNS]
            lines.append(f"| {label}{ARROWS[better]} | {model} | " + " | ".join(values) + " |")
    lines += ["", *(f"- {note}" for note in meta.get("notes", []))]
    return "\n".join(lines).rstrip() + "\n"


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per metric and model; a mean and a std column per bucket."""
    rows = []
    for metric in _metric_order(table):
        for model in _model_order(table):
            part = table[(table["metric"] == metric) & (table["model"] == model)].set_index("bucket")
            if part.empty:
                continue
            row = {"metric": metric, "model": model}
            for bucket in COLUMNS:
                row[bucket] = part["mean"].get(bucket, math.nan)
                row[f"{bucket}_std"] = part["std"].get(bucket, math.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def plot_by_turns(table: pd.DataFrame, panels: list[tuple[str, str]], title: str, path: Path) -> None:
    """One panel per metric: a line per model over the 1/2/3+ turn buckets with ± std error bars."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, (metric, name) in zip(axes[0], panels):
        for model in _model_order(table):
            part = table[(table["metric"] == metric) & (table["model"] == model)].set_index("bucket")
            buckets = [b for b in BUCKETS if b in part.index]
            if not buckets:
                continue
            axis.errorbar([COLUMNS[b] for b in buckets], part.loc[buckets, "mean"], yerr=part.loc[buckets, "std"],
                          marker="o", capsize=4, label=model)
        axis.set_title(name)
        axis.set_xlabel("conversation length")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def examples_markdown(results: EvalResults, n: int = 6, seed: int = 0) -> str:
    """Table 3 of the method in style: history, prompt, each model's reply (first seed), the expert's reply; first
    every drawn example in one table with the models side by side, then each example on its own. Examples are drawn
    with `seed`, spread over the turn buckets (other examples stand in for a bucket that has too few)."""
    rng = random.Random(seed)
    by_bucket = {b: [i for i, r in enumerate(results.records) if r["bucket"] == b] for b in BUCKETS}
    chosen: list[int] = []
    for k, bucket in enumerate(BUCKETS):
        rows = by_bucket[bucket]
        share = (n - len(chosen)) // (len(BUCKETS) - k) if k < len(BUCKETS) - 1 else n - len(chosen)
        chosen += rng.sample(rows, min(share, len(rows)))
    taken = set(chosen)
    rest = [i for i in range(len(results.records)) if i not in taken]  # a bucket too small for its share
    chosen += rng.sample(rest, min(n - len(chosen), len(rest)))
    records = [results.records[index] for index in sorted(chosen)]
    models = [m["name"] for m in results.meta["models"]]
    lines = ["# Example replies", "",
             f"Drawn with seed {seed}; each model's reply from its first sampling seed.", "",
             "| # | context (history / prompt) | " + " | ".join(_md(model) for model in models) + " | expert |",
             "| --- | --- |" + " --- |" * (len(models) + 1)]
    for number, record in enumerate(records, 1):
        history = f"({_md(' / '.join(record['history']))}) " if record["history"] else ""
        replies = " | ".join(_md(record["replies"][model][0]) for model in models)
        lines.append(f"| {number} | {history}{_md(record['prompt'])} | {replies} | {_md(record['expert'])} |")
    lines.append("")
    for number, record in enumerate(records, 1):
        emotion = f", emotion: {record['emotion']}" if record["emotion"] else ""
        lines += [f"## Example {number} ({record['source']}, {COLUMNS[record['bucket']]}{emotion})", "",
                  "| | |", "| --- | --- |",
                  f"| History | {_md(' / '.join(record['history'])) if record['history'] else 'None'} |",
                  f"| Prompt | {_md(record['prompt'])} |"]
        lines += [f"| {_md(model)} | {_md(record['replies'][model][0])} |" for model in models]
        lines += [f"| Expert reply | {_md(record['expert'])} |", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "*(empty)*"


def nested(table: pd.DataFrame) -> dict:
    """{model: {metric: {bucket: {mean, std, seeds}}}}"""
    result: dict = {}
    for r in table.itertuples():
        result.setdefault(r.model, {}).setdefault(r.metric, {})[r.bucket] = {"mean": r.mean, "std": r.std,
                                                                            "seeds": r.seeds}
    return result


def _finite(value):
    """NaN -> None, so the file is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
