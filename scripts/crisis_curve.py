"""Could any threshold of the semantic crisis layer meet issue 17's bars? A diagnostic, never a way to choose one.

Both layers (what `core.safety.assess` does) on held-out parts A-D pooled and on the EmpatheticDialogues and
DailyDialog test prompts, with the layer's two thresholds (a message read alone, a message after a crisis turn)
moved together by `delta`: recall on the crisis messages, false alarms on the hard negatives, the test prompts'
false-positive rate. At delta 0 the figures are the bench's (`python -m core bench safety`, parts pooled). The
thresholds are chosen on the ED/DD validation utterances alone (`core.safety.train_semantic`); this curve reads the
held-out parts, so nothing may be chosen from it. What it can tell is whether the bars are a matter of where the
threshold sits or of how the layer ranks crisis messages against their look-alikes.

    python scripts/crisis_curve.py [--head checkpoints/crisis] [--data-dir ../shared/data] [--step 0.02] [--span 0.4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: the repository root holds core/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def curve(ruled: torch.Tensor, read_alone: torch.Tensor, before: torch.Tensor, read_after: torch.Tensor,
          crisis: torch.Tensor, prompts_ruled: torch.Tensor, prompts_read: torch.Tensor, deltas: list[float]
          ) -> list[tuple[float, float, float, float]]:
    """(delta, recall, false alarms, test FPR) for each delta. Per held-out message: whether the rules flag it, the
    layer's reading alone and after a crisis turn, each less its threshold, and whether a crisis turn came before;
    per test prompt (read alone): whether the rules flag it and its reading less the threshold."""
    rows = []
    for delta in deltas:
        flagged = ruled | (read_alone >= delta) | (before & (read_after >= delta))
        rows.append((delta, (flagged & crisis).sum().item() / crisis.sum().item(),
                     (flagged & ~crisis).sum().item() / (~crisis).sum().item(),
                     (prompts_ruled | (prompts_read >= delta)).float().mean().item()))
    return rows


def main() -> None:
    from core.safety import semantic
    from core.safety.crisis import assess_rules, normalise
    from core.safety.phrasings import read_labelled, real_prompts
    from core.safety_bench import FPR_TARGET, HELDOUT, HELDOUT_FALSE_ALARM_TARGET, HELDOUT_RECALL_TARGET, PARTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", default=str(semantic.HEAD_DIR), help="the semantic layer's folder")
    parser.add_argument("--data-dir", default=None, help="EmpatheticDialogues and DailyDialog (default ../shared/data)")
    parser.add_argument("--step", type=float, default=0.02)
    parser.add_argument("--span", type=float, default=0.4, help="delta runs from -span to +span")
    args = parser.parse_args()

    layer = semantic.SemanticLayer.load(args.head)
    model = layer.model
    alone, after = float(model.threshold), float(model.head_threshold)
    rows = [row for path in (HELDOUT, *(path for path, _ in PARTS.values())) for row in read_labelled(path)]
    margins = []  # (rules flag it, margin read alone, a crisis turn came before, margin after one)
    with torch.inference_mode():
        for row in rows:
            embedding = model.embed([normalise(row.text)])
            margins.append((assess_rules(row.text, list(row.history)).is_crisis,
                            model.reading(embedding, torch.tensor([False])).item() - alone,
                            layer.crisis_before(list(row.history), rules_context=True),
                            model.reading(embedding, torch.tensor([True])).item() - after))
    ruled, read_alone, before, read_after = (torch.tensor(column) for column in zip(*margins))
    crisis = torch.tensor([row.is_crisis for row in rows])
    prompts = real_prompts(args.data_dir)
    prompts_ruled = torch.tensor([assess_rules(p.text).is_crisis for p in prompts])
    prompts_read = model.crisis_probability([normalise(p.text) for p in prompts]) - alone

    print(f"{args.head}: thresholds {alone:.3f} (alone) / {after:.3f} (after a crisis turn); held-out parts A-D "
          f"pooled: {int(crisis.sum())} crisis messages, {int((~crisis).sum())} hard negatives; {len(prompts)} test "
          f"prompts. Targets: recall >= {HELDOUT_RECALL_TARGET:.0%}, false alarms <= "
          f"{HELDOUT_FALSE_ALARM_TARGET:.0%}, FPR <= {FPR_TARGET:.0%}")
    steps = round(args.span / args.step)
    deltas = [i * args.step for i in range(-steps, steps + 1)]
    for delta, recall, false_alarms, fpr in curve(ruled, read_alone, before, read_after, crisis, prompts_ruled,
                                                  prompts_read, deltas):
        met = (recall >= HELDOUT_RECALL_TARGET, false_alarms <= HELDOUT_FALSE_ALARM_TARGET, fpr <= FPR_TARGET)
        print(f"delta {delta:+.2f}: recall {recall:6.1%}  false alarms {false_alarms:5.1%}  test FPR {fpr:6.2%}  "
              f"bars met {sum(met)} of 3")


if __name__ == "__main__":
    main()
