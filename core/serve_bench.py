"""Serving the shipped models on this machine: time to load every model, and p50/p95 seconds for one reply.

`python -m core bench serve [--checkpoints-dir DIR]`. Target: under 0.3 s per reply for EmpathyGAIL on 2 CPU cores.
"""

from __future__ import annotations

import statistics
import time

from core import paths
from core.models.generator import Decoding
from core.registry import list_models, load_responder

# The method's Table 3 prompts: what a person types first in the demo.
PROMPTS = [
    (["I moved to LA a few years ago and I never had the chance to visit home."], "I'm going to see my parents soon!"),
    ([], "He was a very good friend of mine. Last month, he passed away."),
    (["I was in a drive-thru line and someone cut in front of me."], "I was furious and blew up at him."),
    ([], "I had a job interview today and I think it went really well."),
]
TARGET_S = 0.3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(checkpoints_dir: str | None = None, replies: int = 20) -> int:
    root = paths.checkpoints_dir(checkpoints_dir)
    cards = list_models(root)
    if not cards:
        print(f"no models in {root}: train them with `python -m core train all --preset cpu` (or small, on a GPU)")
        return 1
    started = time.perf_counter()
    responders = {card.name: load_responder(card.path) for card in cards}
    print(f"loaded {len(responders)} models from {root} in {time.perf_counter() - started:.2f} s")
    status = 0
    for name, responder in responders.items():
        responder.respond(*PROMPTS[0], Decoding(seed=0))  # the first call pays for lazy initialisation
        seconds = []
        for i in range(replies):
            history, prompt = PROMPTS[i % len(PROMPTS)]
            tic = time.perf_counter()
            responder.respond(history, prompt, Decoding(seed=i))
            seconds.append(time.perf_counter() - tic)
        p50, p95 = statistics.median(seconds), percentile(seconds, 0.95)
        verdict = ""
        if responder.card.algorithm == "empathygail":
            verdict = f"  (target {TARGET_S} s: {'met' if p95 <= TARGET_S else 'missed'})"
            status = 0 if p95 <= TARGET_S else 1
        print(f"{name:>24}: one reply p50 {p50:.3f} s, p95 {p95:.3f} s over {replies}{verdict}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
