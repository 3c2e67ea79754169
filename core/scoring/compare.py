"""The quality bar of what ships: is EmpathyGAIL at least as good as GPT-2+MLE on the same test examples?

Each criterion compares the candidate with the baseline (or checks one model alone) on the whole test set. Its
interval is a paired bootstrap over examples (Koehn, 2004): resample the examples with replacement, recompute
the corpus-level metric of both models on the same resample (averaged over the sampling seeds), and take the
2.5th and 97.5th percentiles of the difference (or ratio), re-centred on the point estimate (the bootstrap's bias
correction: resampling repeats replies, which lowers Distinct-n, the more diverse model's more). A criterion is
met when its point estimate meets it; it is met *clearly* when the whole interval does, and missed clearly when
none of it does; otherwise the test set cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.scoring.evaluate import METRICS, EvalResults, MetricFn

CANDIDATE, BASELINE = "empathygail", "mle"  # algorithms, as the model cards name them


@dataclass(frozen=True)
class Criterion:
    metric: str
    relation: str  # at_least: candidate >= baseline; ratio_at_most: candidate / baseline <= bound;
    #                at_most: the subject's own value <= bound
    bound: float = 0.0
    subject: str = "candidate"  # at_most only: candidate | baseline
    source: str | None = None  # only the test examples of this source

    def describe(self) -> str:
        label = METRICS[self.metric][0] + (f" on {self.source}" if self.source else "")
        if self.relation == "at_least":
            return f"{label}: EmpathyGAIL at least GPT-2+MLE"
        if self.relation == "ratio_at_most":
            return f"{label}: EmpathyGAIL at most {self.bound:g} x GPT-2+MLE"
        return f"{label}: {'EmpathyGAIL' if self.subject == 'candidate' else 'GPT-2+MLE'} at most {self.bound:g}"


# Issue #14 (the pretrained base): MLE at most 35 per word on ED's listener turns (issue #6 asked 55 of the
# from-scratch GPT-2); EmpathyGAIL's BLEU, Distinct-2 and emotion accuracy at least MLE's, with perplexity no more
# than 10% worse.
BAR = (Criterion("ppl_word", "at_most", 35.0, subject="baseline", source="empatheticdialogues"),
       Criterion("bleu", "at_least"), Criterion("distinct2", "at_least"), Criterion("emotion_acc", "at_least"),
       Criterion("ppl_word", "ratio_at_most", 1.10))


@dataclass
class Verdict:
    criterion: str
    candidate: float
    baseline: float
    statistic: float  # difference, ratio or the subject's own value, as the criterion reads
    low: float
    high: float
    met: bool
    verdict: str  # met clearly | met, within noise | missed, within noise | missed clearly | not measured


def pairs(results: EvalResults) -> list[tuple[str, str]]:
    """(candidate, baseline) model names: every EmpathyGAIL model against the first GPT-2+MLE one, by the
    algorithm their cards name (none without both)."""
    baselines = [m["name"] for m in results.meta["models"] if m.get("algorithm") == BASELINE]
    return [(m["name"], baselines[0]) for m in results.meta["models"]
            if m.get("algorithm") == CANDIDATE and baselines]


def quality_bar(results: EvalResults, candidate: str, baseline: str, criteria: Sequence[Criterion] = BAR,
                resamples: int = 1000, seed: int = 0) -> list[Verdict]:
    """The verdict on each criterion for the two named models of `results`."""
    names = {"candidate": candidate, "baseline": baseline}
    n_seeds = len(results.meta["seeds"])
    rng = np.random.default_rng(seed)
    verdicts = []
    for criterion in criteria:
        rows = np.asarray([i for i, r in enumerate(results.records)
                           if criterion.source is None or r["source"] == criterion.source], dtype=np.int64)
        value = {who: _seed_mean(results, name, criterion.metric, n_seeds) for who, name in names.items()}
        if not len(rows) or any(fn is None for fn in value.values()):
            verdicts.append(Verdict(criterion.describe(), math.nan, math.nan, math.nan, math.nan, math.nan, False,
                                    "not measured"))
            continue
        point = {who: fn(rows) for who, fn in value.items()}
        draws = [rows[rng.integers(0, len(rows), len(rows))] for _ in range(resamples)]
        samples = np.asarray([_statistic(criterion, {who: fn(d) for who, fn in value.items()}) for d in draws])
        samples = samples[np.isfinite(samples)]
        statistic = _statistic(criterion, point)
        # Re-centred on the point estimate: resampling repeats replies, which biases Distinct-n downwards (for the
        # more diverse model more); for sums and means the shift is about 0.
        low, high = (statistic + np.percentile(samples - samples.mean(), [2.5, 97.5]) if len(samples)
                     else (math.nan, math.nan))
        met = _meets(criterion, statistic)
        verdicts.append(Verdict(criterion.describe(), point["candidate"], point["baseline"], statistic, float(low),
                                float(high), met, _verdict(criterion, met, low, high)))
    return verdicts


def _seed_mean(results: EvalResults, model: str, metric: str, n_seeds: int) -> MetricFn | None:
    fns = [results.runs.get((model, s), {}).get(metric) for s in range(n_seeds)]
    if not fns or any(fn is None for fn in fns):
        return None
    return lambda rows: float(np.mean([fn(rows) for fn in fns]))


def _statistic(criterion: Criterion, value: dict[str, float]) -> float:
    if criterion.relation == "at_least":
        return value["candidate"] - value["baseline"]
    if criterion.relation == "ratio_at_most":
        return value["candidate"] / value["baseline"] if value["baseline"] else math.nan
    if criterion.relation == "at_most":
        return value[criterion.subject]
    raise ValueError(f"relation {criterion.relation!r}; expected at_least, ratio_at_most or at_most")


def _meets(criterion: Criterion, statistic: float) -> bool:
    return statistic >= 0 if criterion.relation == "at_least" else statistic <= criterion.bound


def _verdict(criterion: Criterion, met: bool, low: float, high: float) -> str:
    if math.isnan(low):
        return "met" if met else "missed"
    if _meets(criterion, low) and _meets(criterion, high):
        return "met clearly"
    if not _meets(criterion, low) and not _meets(criterion, high):
        return "missed clearly"
    return "met, within noise" if met else "missed, within noise"


def bar_markdown(verdicts: Sequence[Verdict], resamples: int, candidate: str, baseline: str) -> str:
    """The bar as a Markdown section for table.md."""
    lines = [f"## Quality bar: {candidate} (EmpathyGAIL) against {baseline} (GPT-2+MLE)", "",
             f"Point estimates on the test examples above (mean over sampling seeds); [2.5%, 97.5%] from a paired "
             f"bootstrap over examples ({resamples} resamples). The statistic is the difference EmpathyGAIL - "
             "GPT-2+MLE, their ratio, or one model's own value, as the criterion reads.", "",
             "| Criterion | EmpathyGAIL | GPT-2+MLE | Statistic [95% interval] | Verdict |",
             "| --- | ---: | ---: | ---: | --- |"]
    for v in verdicts:
        lines.append(f"| {v.criterion} | {v.candidate:.2f} | {v.baseline:.2f} | {v.statistic:.3f} "
                     f"[{v.low:.3f}, {v.high:.3f}] | {v.verdict} |")
    passed = sum(v.met for v in verdicts)
    lines += ["", f"{passed} of {len(verdicts)} criteria met"
              + ("." if passed == len(verdicts) else ": the bar is not met.")]
    return "\n".join(lines) + "\n"


def bar_json(verdicts: Sequence[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
