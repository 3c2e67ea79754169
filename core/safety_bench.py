"""Measure crisis recognition: the rule table, the semantic layer and both together.

    python -m core.safety_bench [DATA_DIR]        (also `python -m core bench safety [--data-dir DIR]`)

For each of rules alone, the semantic layer alone and both (what `core.safety.assess` does): recall on the crisis
messages of tests/fixtures/crisis/heldout.txt and false alarms on its hard negatives (nothing was fitted or tuned
on that file; the bars are measured on it), the same on heldout_b.txt, heldout_c.txt and heldout_d.txt (held-out
parts B and C, by a second and a third author; D, examples quoted by other authors, CoralMind), the false-positive
rate on the real test utterances (EmpatheticDialogues test.csv, DailyDialog dialogues_test.txt; ordinary
conversations, so every hit counts as false, and the hits are printed so that a person can judge them), the same
among ED conversations labelled sad, devastated, lonely, afraid or anxious, and the time per message; for both
layers, each part's recall and false alarms and those of all parts pooled with 95% Wilson intervals, and whether
the interval can tell the figure from its target. The rule table is also checked on the lists it was written
against (tests/fixtures/, see their headers).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from scipy.stats import binomtest

from core.safety.crisis import CATEGORIES, assess, assess_rules, normalise
from core.safety.phrasings import (HELDOUT, HELDOUT_B, HELDOUT_C, HELDOUT_D, SAD_EMOTIONS, Labelled, Prompt,
                                   read_crisis_phrasings, read_labelled, read_non_crisis_phrasings, real_prompts)

RECALL_TARGET = 0.95  # the rule table on its own lists
FPR_TARGET = 0.01
HELDOUT_RECALL_TARGET = 0.97  # both layers
HELDOUT_FALSE_ALARM_TARGET = 0.03
MS_TARGET = 20.0
LAYERS = ("rules", "semantic", "both")
TIMED = 200  # real test utterances timed one by one (with the held-out messages)
SHOWN = 10  # false positives and misses printed
# The held-out parts beside part A (where the bars are measured): file and who wrote its messages.
PARTS = {"B": (HELDOUT_B, "a second author"), "C": (HELDOUT_C, "a third author"),
         "D": (HELDOUT_D, "other authors: CoralMind's quoted examples")}


@dataclass(frozen=True)
class HeldOut:
    """One layer on one held-out file."""
    recall: float
    missed: list[str]
    false_alarms: list[str]
    positives: int
    negatives: int

    @classmethod
    def of(cls, said: list[bool], rows: list[Labelled]) -> HeldOut:
        positives = sum(row.is_crisis for row in rows)
        return cls(recall=sum(s for s, row in zip(said, rows) if row.is_crisis) / positives,
                   missed=[row.text for s, row in zip(said, rows) if row.is_crisis and not s],
                   false_alarms=[row.text for s, row in zip(said, rows) if not row.is_crisis and s],
                   positives=positives, negatives=len(rows) - positives)

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """Crisis messages recognised, crisis messages, false alarms, hard negatives."""
        return self.positives - len(self.missed), self.positives, len(self.false_alarms), self.negatives


@dataclass
class LayerFigures:
    part_a: HeldOut  # heldout.txt, where the bars are measured
    ms_mean: float
    ms_p95: float
    fpr: float | None = None  # None when the real data is absent
    sad_hits: int = 0
    false_positives: list[tuple[str, str]] = field(default_factory=list)  # (source, utterance)
    parts: dict[str, HeldOut] = field(default_factory=dict)  # the other held-out parts, by letter (PARTS)


@dataclass
class SafetyFigures:
    recall: float  # the rule table on the lists it was written against
    phrasings: int
    recall_by_category: dict[str, float]
    missed: list[tuple[str, str]]
    hard_negatives: int
    hard_negative_hits: list[tuple[str, str]]  # (message, reason)
    layers: dict[str, LayerFigures] = field(default_factory=dict)  # empty when the semantic layer is unavailable
    prompts: int = 0
    sad_prompts: int = 0
    prompts_by_source: dict[str, int] = field(default_factory=dict)
    threads: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        rules_ok = self.recall >= RECALL_TARGET and not self.hard_negative_hits
        both = self.layers.get("both")
        if both is None:
            return False
        return (rules_ok and both.part_a.recall >= HELDOUT_RECALL_TARGET
                and len(both.part_a.false_alarms) <= HELDOUT_FALSE_ALARM_TARGET * both.part_a.negatives
                and (both.fpr is None or both.fpr <= FPR_TARGET) and both.ms_mean <= MS_TARGET)


def _deciders():
    """layer -> (text, history) -> is it a crisis; None when the semantic layer is unavailable."""
    from core.safety import semantic

    layer = semantic.layer()
    if layer is None:
        return None, None
    return layer, {
        "rules": lambda text, history: assess_rules(text, history).is_crisis,
        "semantic": lambda text, history: layer.judge(text, history, rules_context=False).is_crisis,
        "both": lambda text, history: assess(text, history).is_crisis,
    }


def _timed(decide, messages: list[tuple[str, list[str]]], layer) -> tuple[float, float]:
    """Mean and 95th percentile milliseconds per message, each read once with nothing cached."""
    layer.forget()
    times = []
    for text, history in messages:
        start = time.perf_counter()
        decide(text, history)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return sum(times) / len(times), times[int(0.95 * (len(times) - 1))]


def _measure_layers(figures: SafetyFigures, prompts: list[Prompt]) -> None:
    layer, deciders = _deciders()
    if layer is None:
        return
    heldout = read_labelled(HELDOUT)
    parts = {letter: read_labelled(path) for letter, (path, _) in PARTS.items() if path.is_file()}
    messages = [(row.text, list(row.history)) for row in heldout]
    timed = messages + [(p.text, []) for p in prompts[::max(1, len(prompts) // TIMED)][:TIMED]]
    semantic_hits = torch.zeros(0, dtype=torch.bool)
    if prompts:  # batched: a prompt has no history, so each layer reads it alone, as `assess` would
        semantic_hits = layer.model.crisis_probability([normalise(p.text) for p in prompts]) >= layer.threshold
    rule_hits = torch.tensor([assess_rules(p.text).is_crisis for p in prompts], dtype=torch.bool)
    sad = torch.tensor([p.emotion in SAD_EMOTIONS for p in prompts], dtype=torch.bool)
    hits = {"rules": rule_hits, "semantic": semantic_hits, "both": rule_hits | semantic_hits}
    for name, decide in deciders.items():
        part_a = HeldOut.of([decide(text, history) for text, history in messages], heldout)
        ms_mean, ms_p95 = _timed(decide, timed, layer)
        found = LayerFigures(part_a=part_a, ms_mean=ms_mean, ms_p95=ms_p95)
        found.parts = {letter: HeldOut.of([decide(row.text, list(row.history)) for row in rows], rows)
                       for letter, rows in parts.items()}
        if prompts:
            found.fpr = hits[name].float().mean().item()
            found.sad_hits = int(hits[name][sad].sum())
            found.false_positives = [(p.source, p.text) for p, hit in zip(prompts, hits[name]) if hit]
        figures.layers[name] = found


def measure(data_dir: str | os.PathLike | None = None, real: bool = True, semantic: bool = True) -> SafetyFigures:
    """The rule table on its own lists and, with `semantic`, every layer on the held-out file and (when `real`)
    the real test prompts."""
    start = time.perf_counter()
    phrasings = read_crisis_phrasings()
    missed = [(category, text) for category, text in phrasings if not assess_rules(text).is_crisis]
    totals = Counter(category for category, _ in phrasings)
    misses = Counter(category for category, _ in missed)
    negatives = read_non_crisis_phrasings()
    hits = [(text, found.reason) for text in negatives if (found := assess_rules(text)).is_crisis]
    figures = SafetyFigures(
        recall=1 - len(missed) / len(phrasings), phrasings=len(phrasings),
        recall_by_category={c: 1 - misses[c] / totals[c] for c in CATEGORIES if totals[c]}, missed=missed,
        hard_negatives=len(negatives), hard_negative_hits=hits, threads=torch.get_num_threads())
    prompts = real_prompts(data_dir) if real else []
    figures.prompts, figures.sad_prompts = len(prompts), sum(p.emotion in SAD_EMOTIONS for p in prompts)
    figures.prompts_by_source = dict(Counter(p.source for p in prompts))
    if semantic:
        _measure_layers(figures, prompts)
    figures.seconds = time.perf_counter() - start
    return figures


def against_target(count: int, total: int, target: float, at_least: bool) -> str:
    """A share, its 95% Wilson interval and its verdict against `target`: met or missed by the point estimate,
    "clearly" when the whole interval is on that side, "within noise" when the interval holds the target (a part of
    about 100 messages cannot then tell the layer from one that meets it)."""
    interval = binomtest(count, total).proportion_ci(confidence_level=0.95, method="wilson")
    share = count / total
    met = share >= target if at_least else share <= target
    noise = interval.low <= target <= interval.high
    return (f"{share:.1%} [{interval.low:.1%}, {interval.high:.1%}] {'met' if met else 'missed'}"
            f"{', within noise' if noise else ' clearly'}")


def _interval_rows(figures: SafetyFigures) -> list[str]:
    """Both layers on each held-out part and on all of them together, with intervals, against the targets."""
    both = figures.layers["both"]
    counts = {letter: held.counts for letter, held in {"A": both.part_a, **both.parts}.items()}
    counts[f"{'+'.join(counts)} pooled"] = tuple(sum(column) for column in zip(*counts.values()))
    rows = ["both layers, 95% Wilson intervals against the targets:"]
    for name, (hits, positives, alarms, negatives) in counts.items():
        rows.append(f"  part {name}: recall {against_target(hits, positives, HELDOUT_RECALL_TARGET, True)}; "
                    f"false alarms {against_target(alarms, negatives, HELDOUT_FALSE_ALARM_TARGET, False)}")
    return rows


def _share(count: int, total: int, digits: int = 1) -> str:
    return f"{count / total:.{digits}%} ({count})" if total else "-"


def _layer_rows(figures: SafetyFigures) -> list[str]:
    rows = [f"{'layer':9s} {'recall':>8s} {'false alarms':>13s} {'FPR test':>14s} {'FPR sad':>12s} {'ms/msg':>7s} "
            f"{'p95':>6s}"]
    for name, found in figures.layers.items():
        fpr = _share(len(found.false_positives), figures.prompts, 3)
        sad = _share(found.sad_hits, figures.sad_prompts, 2)
        alarms = _share(len(found.part_a.false_alarms), found.part_a.negatives)
        rows.append(f"{name:9s} {found.part_a.recall:>8.1%} {alarms:>13s} {fpr:>14s} {sad:>12s} {found.ms_mean:>7.1f} "
                    f"{found.ms_p95:>6.1f}")
    return rows


def report(figures: SafetyFigures) -> str:
    by_category = ", ".join(f"{c} {r:.1%}" for c, r in figures.recall_by_category.items())
    lines = [f"rule table on the lists it was written against: recall {figures.recall:.1%} of {figures.phrasings} "
             f"({by_category}; target >= {RECALL_TARGET:.0%}); {len(figures.hard_negative_hits)} of "
             f"{figures.hard_negatives} hard negatives flagged (target 0)"]
    lines += [f"  missed [{category}] {text}" for category, text in figures.missed[:SHOWN]]
    lines += [f"  flagged {text}  <- {reason}" for text, reason in figures.hard_negative_hits[:SHOWN]]
    if not figures.layers:
        lines.append("semantic layer: not measured (MiniLM or checkpoints/crisis unavailable, or not asked for)")
        lines.append(f"{'PASS' if figures.passed else 'FAIL'} ({figures.seconds:.1f} s)")
        return "\n".join(lines)
    both = figures.layers["both"]
    sources = ", ".join(f"{n} {s}" for s, n in figures.prompts_by_source.items()) or "real test data not found"
    lines.append(f"held-out ({HELDOUT.name}, never fitted or tuned on): {both.part_a.positives} crisis "
                 f"messages, {both.part_a.negatives} hard negatives; real test prompts: {figures.prompts} ({sources}), "
                 f"{figures.sad_prompts} of them in ED's {'/'.join(SAD_EMOTIONS)} conversations; time on "
                 f"{figures.threads} torch thread(s)")
    lines += [f"  {row}" for row in _layer_rows(figures)]
    for letter, held in both.parts.items():
        path, author = PARTS[letter]
        lines.append(f"held-out part {letter} ({path.name}, {author}, never fitted or tuned on): "
                     f"{held.positives} crisis messages, {held.negatives} hard negatives")
        lines += [f"  {name:9s} recall {found.parts[letter].recall:.1%}, false alarms "
                  f"{_share(len(found.parts[letter].false_alarms), held.negatives)}"
                  for name, found in figures.layers.items()]
    lines.append(f"  targets for both: recall >= {HELDOUT_RECALL_TARGET:.0%}, false alarms <= "
                 f"{HELDOUT_FALSE_ALARM_TARGET:.0%}, FPR <= {FPR_TARGET:.0%}, < {MS_TARGET:.0f} ms per message")
    lines += _interval_rows(figures)
    lines += [f"  both missed: {text}" for text in both.part_a.missed[:SHOWN]]
    lines += [f"  both false alarm: {text}" for text in both.part_a.false_alarms[:SHOWN]]
    lines += [f"  both on real test [{source}]: {text[:200]}" for source, text in both.false_positives[:SHOWN]]
    lines.append(f"{'PASS' if figures.passed else 'FAIL'} ({figures.seconds:.1f} s)")
    return "\n".join(lines)


def main(data_dir: str | os.PathLike | None = None) -> int:
    """Print the figures; exit status 0 when every target is met."""
    try:
        figures = measure(data_dir)
    except FileNotFoundError as error:
        print(f"note: {error}", file=sys.stderr)
        figures = measure(data_dir, real=False)
    print(report(figures))
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
