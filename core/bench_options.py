"""What `python -m core bench` can measure and with which options, without importing torch: the CLI builds its
parser (and `--help`) from these, and core.bench runs them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BenchOptions:
    prompts: int = 128
    prompt_tokens: int = 96
    new_tokens: int = 50
    one_by_one: int | None = None  # single `model.generate` calls timed (default: every prompt); scaled to all
    minibatch: int = 8
    minibatch_steps: int = 16
    cache_implementation: str | None = None  # "static" for a preallocated KV cache
    seed: int = 0


# Speed sections: name -> the function in core.bench that measures it, `(BenchSetup, BenchOptions) -> figures`.
SECTIONS = {"generation": "bench_generation", "gail-step": "bench_gail_step"}
