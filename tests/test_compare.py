"""The quality bar: verdicts from point estimates and paired bootstrap intervals."""

import math

import numpy as np
import pandas as pd

from core.scoring import metrics
from core.scoring.compare import Criterion, bar_markdown, pairs, quality_bar
from core.scoring.evaluate import EvalResults


def _results(candidate: dict[str, np.ndarray], baseline: dict[str, np.ndarray], sources: list[str],
             seeds: int = 2) -> EvalResults:
    """Per-example values per metric; each run's metric is their mean over the rows (seed s adds s * 0.001)."""
    def run(values, seed):
        return {name: (lambda rows, column=column: float(column[rows].mean()) + seed * 1e-3)
                for name, column in values.items()}

    runs = {}
    for name, values in (("egail", candidate), ("mle-model", baseline)):
        for seed in range(seeds):
            runs[name, seed] = run(values, seed)
    meta = {"models": [{"name": "egail", "algorithm": "empathygail"}, {"name": "mle-model", "algorithm": "mle"}],
            "seeds": list(range(seeds))}
    return EvalResults(scores=pd.DataFrame(), records=[{"source": s} for s in sources], meta=meta, runs=runs)


def test_clear_gaps_are_clear_and_small_ones_are_noise():
    rng = np.random.default_rng(0)
    n = 400
    noise = rng.normal(0, 1, n)
    results = _results({"bleu": 5 + noise, "distinct2": 50 + noise + 0.02, "ppl_word": np.full(n, 24.0)},
                       {"bleu": 3 + noise, "distinct2": 50 + rng.normal(0, 1, n), "ppl_word": np.full(n, 30.0)},
                       ["empatheticdialogues", "dailydialog"] * (n // 2))
    assert pairs(results) == [("egail", "mle-model")]
    verdicts = {v.criterion.split(":")[0]: v for v in quality_bar(results, "egail", "mle-model", resamples=300)}
    bleu = verdicts["BLEU"]
    assert math.isclose(bleu.statistic, 2.0, abs_tol=1e-9) and bleu.low > 0 and bleu.verdict == "met clearly"
    assert verdicts["Distinct-2 (%)"].verdict.endswith("within noise")
    ed = verdicts["Perplexity per word on empatheticdialogues"]  # MLE at most 35: 30 on the ED rows
    assert math.isclose(ed.statistic, 30.0005) and ed.verdict == "met clearly"  # the seed mean of 30, 30.001
    assert verdicts["Emotion accuracy (%)"].verdict == "not measured" and not verdicts["Emotion accuracy (%)"].met
    ratio = [v for v in quality_bar(results, "egail", "mle-model", resamples=50)
             if v.criterion.startswith("Perplexity per word:")][0]
    assert math.isclose(ratio.statistic, (24 + 0.0005) / (30 + 0.0005)) and ratio.verdict == "met clearly"


def test_a_worse_candidate_misses_clearly_and_the_section_says_the_bar_is_not_met():
    n = 200
    results = _results({"bleu": np.r_[np.zeros(n // 2), np.ones(n // 2)]},
                       {"bleu": np.r_[np.ones(n // 2) * 3, np.ones(n // 2) * 4]}, ["dailydialog"] * n)
    (verdict,) = quality_bar(results, "egail", "mle-model", [Criterion("bleu", "at_least")], resamples=200)
    assert verdict.statistic == -3.0 and verdict.high < 0 and verdict.verdict == "missed clearly"
    text = bar_markdown([verdict], 200, "egail", "mle-model")
    assert "missed clearly" in text and "the bar is not met" in text


def test_no_intervals_without_resamples_and_no_bar_without_the_pair():
    results = _results({"bleu": np.ones(10)}, {"bleu": np.zeros(10)}, ["dailydialog"] * 10)
    (verdict,) = quality_bar(results, "egail", "mle-model", [Criterion("bleu", "at_least")], resamples=0)
    assert verdict.met and verdict.verdict == "met" and math.isnan(verdict.low)
    results.meta["models"].append({"name": "egail-2", "algorithm": "empathygail"})
    assert pairs(results) == [("egail", "mle-model"), ("egail-2", "mle-model")]  # each candidate is judged
    results.meta["models"] = results.meta["models"][:1]
    assert pairs(results) == []  # no GPT-2+MLE model: no bar


def test_bleu_from_statistics_of_any_rows_is_corpus_bleu_of_those_rows():
    hypotheses = ["the cat sat on the mat", "hello there friend", "I am so sorry to hear that", "oh no"]
    references = ["the cat is on the mat", "hi there", "I am sorry to hear that", "that is awful"]
    for order in (1, 2, 4):
        statistics = metrics.bleu_statistics(hypotheses, references, order)
        assert len(statistics) == 4
        for rows in ([0, 1, 2, 3], [0, 2], [1, 1, 3]):
            expected = metrics.bleu([hypotheses[i] for i in rows], [references[i] for i in rows], order)
            assert math.isclose(metrics.bleu_from_statistics(statistics[rows], order), expected)
    replies = ["I am so sorry.", "I am fine", "so sorry"]
    grams = [metrics.ngrams(metrics.words(r), 2) for r in replies]
    assert metrics.distinct_of_ngrams(grams) == metrics.distinct_n(replies, 2)
