"""How exported weights are stored and where loaded models compute: float16 halves what ships (checkpoints/ must
stay small enough to clone), and every loader computes in float32 whatever the stored type, because CPUs are slow
at half precision."""

from __future__ import annotations

from collections.abc import Mapping

import torch

STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None): cuda when available, else cpu."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def weight_dtype(name: str) -> torch.dtype:
    """A storage type for exported weights, by name."""
    if name not in STORAGE_DTYPES:
        raise ValueError(f"export dtype {name!r}; expected one of {', '.join(STORAGE_DTYPES)}")
    return getattr(torch, name)


def stored(state: Mapping[str, torch.Tensor], dtype: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict as safetensors stores it: detached, contiguous, on the CPU, in `dtype` when one is named."""
    target = weight_dtype(dtype) if dtype else None
    return {k: v.detach().to(target or v.dtype).contiguous().cpu() for k, v in state.items()}
