"""Pure metric functions: BLEU, Distinct-n, perplexity, length, emotion accuracy, seed aggregation, turn buckets.

Scales follow the literature on EmpatheticDialogues so numbers can be set beside published ones: BLEU is
sacrebleu's 0-100 similarity (higher is better), Distinct-n and emotion accuracy are percentages (x100).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from core.data.records import BUCKETS

ALL = "all"
BLEU_TOKENIZE = "13a"  # sacrebleu's default (the WMT standard): splits punctuation off words, keeps case

_tokenize = Tokenizer13a()


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    """Corpus BLEU in [0, 100] with one reference per hypothesis; `max_order` 1 or 2 gives BLEU-1/BLEU-2
    (cumulative: brevity penalty x geometric mean of the 1..n-gram precisions), as ED papers report them."""
    if not hypotheses and not references:
        return math.nan
    return bleu_from_statistics(bleu_statistics(hypotheses, references, max_order), max_order)


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4) -> np.ndarray:
    """Each hypothesis's sufficient statistics of corpus BLEU (lengths, n-gram matches and counts), one row per
    hypothesis: any subset's corpus BLEU is `bleu_from_statistics` of its rows, with no tokenising again. This is
    how sacrebleu's own paired bootstrap resamples BLEU."""
    if len(hypotheses) != len(references):
        raise ValueError(f"bleu: {len(hypotheses)} hypotheses but {len(references)} references")
    rows = _bleu(max_order)._extract_corpus_statistics(list(hypotheses), [list(references)])
    return np.asarray(rows, dtype=np.int64).reshape(len(hypotheses), -1)


def bleu_from_statistics(statistics: np.ndarray, max_order: int = 4) -> float:
    """Corpus BLEU in [0, 100] of the hypotheses whose `bleu_statistics` rows are given."""
    if len(statistics) == 0:
        return math.nan
    return _bleu(max_order)._compute_score_from_stats(statistics.sum(axis=0).tolist()).score


def bleu_signature(max_order: int = 4) -> str:
    """sacrebleu's signature string (tokenisation, case, smoothing, version), for the report."""
    metric = _bleu(max_order)
    metric.corpus_score(["a"], [["a"]])  # the signature knows the number of references only after one call
    return str(metric.get_signature())


def _bleu(max_order: int) -> BLEU:
    # force: DailyDialog ships pre-tokenised ("so sorry ."), which sacrebleu would warn about on every call; its 13a
    # tokeniser splits punctuation the same way either way, so the score is unchanged.
    return BLEU(tokenize=BLEU_TOKENIZE, max_ngram_order=max_order, force=True)


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation split off (sacrebleu's 13a tokeniser), for Distinct-n."""
    return _tokenize(text.lower()).split()


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Corpus-level Distinct-n x100: distinct n-grams over all n-grams across every reply (Li et al., 2016)."""
    return distinct_of_ngrams([ngrams(words(text), n) for text in texts])


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_of_ngrams(per_reply: Iterable[Sequence[tuple[str, ...]]]) -> float:
    """Distinct-n x100 from each reply's n-grams (`ngrams(words(reply), n)`), so a resample need not tokenise."""
    grams = [gram for reply in per_reply for gram in reply]
    return 100.0 * len(set(grams)) / len(grams) if grams else math.nan


def perplexity(logprob_sum: float, count: int) -> float:
    """exp(-sum log p / count): per token when `count` counts tokens, per word when it counts words."""
    if count <= 0:
        return math.nan
    return math.exp(-logprob_sum / count)


def word_counts(texts: Sequence[str]) -> list[int]:
    """Each reply's length in whitespace-separated words."""
    return [len(t.split()) for t in texts]


def mean_length(texts: Sequence[str]) -> float:
    """Mean reply length in whitespace-separated words."""
    return float(np.mean(word_counts(texts))) if texts else math.nan


def emotion_accuracy(predicted: Sequence[str], gold: Sequence[str], labels: Iterable[str] | None = None) -> float:
    """Percentage of predictions equal to the gold label, over examples that have one (`""` means none) and,
    when `labels` is given, whose gold label the classifier can predict at all."""
    if len(predicted) != len(gold):
        raise ValueError(f"emotion_accuracy: {len(predicted)} predictions but {len(gold)} gold labels")
    known = set(labels) if labels is not None else None
    pairs = [(p, g) for p, g in zip(predicted, gold) if g and (known is None or g in known)]
    return 100.0 * sum(p == g for p, g in pairs) / len(pairs) if pairs else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds, ignoring NaN; one value has std 0."""
    kept = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if kept.size == 0:
        return math.nan, math.nan
    return float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else 0.0


def bucket_indices(buckets: Sequence[str]) -> dict[str, list[int]]:
    """Row indices of each bucket, in BUCKETS order, then ALL; empty buckets are left out."""
    groups = {b: [i for i, x in enumerate(buckets) if x == b] for b in BUCKETS}
    unknown = sorted(set(buckets) - set(BUCKETS))
    if unknown:
        raise ValueError(f"unknown turn bucket(s) {unknown}; expected {list(BUCKETS)}")
    return {**{b: rows for b, rows in groups.items() if rows}, ALL: list(range(len(buckets)))}
