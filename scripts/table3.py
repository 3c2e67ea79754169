"""Every shipped model's replies to the method's Table 3 openers, greedy and sampled (top-p 0.9, temperature 0.9,
seed 0), as the Markdown tables the README shows: `python scripts/table3.py [--checkpoints-dir DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds core/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import paths  # noqa: E402
from core.models.generator import Decoding  # noqa: E402
from core.models.card import list_models
from core.registry import load_responder  # noqa: E402
from core.serve_bench import PROMPTS  # noqa: E402


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "(empty)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints-dir", help="the models (default: checkpoints/)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    args = parser.parse_args()
    cards = list_models(paths.checkpoints_dir(args.checkpoints_dir))
    settings = [("greedy", Decoding(do_sample=False, max_new_tokens=args.max_new_tokens)),
                ("sampled, seed 0", Decoding(seed=0, max_new_tokens=args.max_new_tokens))]
    replies = {}
    for card in cards:
        responder = load_responder(card.path)
        for name, decoding in settings:
            replies[card.name, name] = responder.respond_batch(PROMPTS, decoding)
    for name, _ in settings:
        print(f"\n{name}:\n")
        print("| opener | " + " | ".join(card.name for card in cards) + " |")
        print("| --- |" + " --- |" * len(cards))
        for i, (history, prompt) in enumerate(PROMPTS):
            opener = (f"({' '.join(history)}) " if history else "") + prompt
            print(f"| {cell(opener)} | " + " | ".join(cell(replies[card.name, name][i]) for card in cards) + " |")


if __name__ == "__main__":
    main()
