"""Where and how a training run executes: seeds, device, bf16 autocast on CUDA, data-parallel through accelerate.

The same training loop runs in one process or under `accelerate launch` (several GPUs, or several CPU processes):
`create_accelerator` reads the launcher's environment, and `shard` gives each process its part of a batch.
"""

from __future__ import annotations

import os
import random
import resource
import sys
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from accelerate import Accelerator

T = TypeVar("T")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def precision_for(device: torch.device | str, precision: str = "auto") -> str:
    """`auto` is bf16 autocast on a CUDA device that supports it, full precision elsewhere (CPU bf16 is slow)."""
    if precision != "auto":
        if precision not in {"no", "bf16", "fp16"}:
            raise ValueError(f"precision must be auto, no, bf16 or fp16, not {precision!r}")
        return precision
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"


def create_accelerator(precision: str = "auto", cpu: bool = False) -> Accelerator:
    """An `Accelerator` for this process; under `accelerate launch` it joins the process group.

    Accelerate keeps one state per process, so every run in a process (the app trains several) asks for the
    same precision: `auto` resolves from the hardware alone.
    """
    cpu = cpu or not torch.cuda.is_available()  # also what makes `accelerate launch` use CPU processes (gloo)
    # The forward pass is wrapped in autocast by `prepare`; gradients and optimizer state stay fp32.
    return Accelerator(mixed_precision=precision_for("cpu" if cpu else "cuda", precision), cpu=cpu)


def shard(items: Sequence[T], accelerator: Accelerator) -> list[T]:
    """This process's share of a global batch (every process gets the same count when the batch divides)."""
    return list(items[accelerator.process_index::accelerator.num_processes])


def hardware_name(device: torch.device | str, num_processes: int = 1) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores)"
    return f"{name} x{num_processes}" if num_processes > 1 else name


def reset_peak_memory(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device | str) -> float:
    """CUDA: the most memory tensors held since the last reset; CPU: the process's peak resident set size."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # macOS reports bytes, Linux KiB


def min_over_processes(accelerator: Accelerator, value: int) -> int:
    """The smallest of every process's `value` (a decision all of them must share)."""
    if accelerator.num_processes == 1:
        return value
    return int(accelerator.gather(torch.tensor([value], device=accelerator.device)).min())


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True in every process when it is true in one (a stop request must stop all of them together)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum") > 0)
