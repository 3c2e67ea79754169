"""Training checkpoints and exported models, written atomically and without pickle.

A checkpoint is a directory `run_dir/checkpoint-{step:08d}`:

    model/ (or one folder per named model)   save_pretrained (safetensors) or safetensors for a plain nn.Module
    optimizer-<name>.safetensors + .json      tensors in safetensors, the rest of the state dict as JSON
    scheduler-<name>.json
    rng.safetensors + rng.json                python, numpy, torch and CUDA generator states (one per process)
    state.json                                step and whatever the loop keeps (written last)

Everything is written into a temporary sibling directory, flushed to disk and renamed into place, so a
crash or a full disk leaves the earlier checkpoints as they were. Only after that are the oldest pruned. What a
killed process left behind (its temporary directory) is tidied by the next write of the same directory.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.atomic import write_directory
from core.models.storage import stored, weight_dtype
from core.models.card import ModelCard
from core.models.generator import reads_base_tokenizer
from core.safe_files import write_checksums
from core.text import TOKENIZER_FILES

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{8,})$")
STATE_FILE = "state.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint or model directory could not be written or read."""


# --- state dicts <-> (safetensors, JSON) -------------------------------------------------------------------


def _split(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """Replace every tensor in a nested state by a reference to `tensors`, so the rest serialises as JSON."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, tensors, f"{key}.{k}") for k, v in obj.items()}
        # Optimizer state is keyed by parameter index; JSON would turn those ints into strings.
        return {"__items__": [[k, _split(v, tensors, f"{key}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_split(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_split(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store {type(obj).__name__} at {key!r} without pickle")


def _join(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _join(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _join(v, tensors) for k, v in obj.items()}
    return obj


def save_state(state: Any, path: Path) -> None:
    """Write a nested state (dicts, lists, tensors, numbers) as `path`.json plus `path`.safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _split(state, tensors, "state")
    if tensors:
        save_file(tensors, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(structure))


def load_state(path: Path, device: torch.device | str = "cpu") -> Any:
    tensor_file = path.with_suffix(".safetensors")
    tensors = load_file(str(tensor_file), device=str(device)) if tensor_file.is_file() else {}
    return _join(json.loads(path.with_suffix(".json").read_text()), tensors)


# --- random number generators -------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states, in a form `save_state` stores."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": [version, list(internal), gauss],
        "numpy": {**numpy_state, "state": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                                           "pos": int(numpy_state["state"]["pos"])}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(rng: Mapping[str, Any]) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(rng["numpy"])
    numpy_state["state"] = {"key": rng["numpy"]["state"]["key"].numpy().astype(np.uint32),
                            "pos": rng["numpy"]["state"]["pos"]}
    np.random.set_state(numpy_state)
    torch.set_rng_state(rng["torch"].to("cpu", torch.uint8))
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in rng["cuda"]])


# --- models -------------------------------------------------------------------------------------------------


def _save_model(model: nn.Module, directory: Path) -> None:
    if isinstance(model, PeftModel):  # the adapter being trained; the frozen base is not the run's to save
        directory.mkdir()
        save_file(stored(get_peft_model_state_dict(model, adapter_name=model.active_adapter)),
                  str(directory / ADAPTER_WEIGHTS))
    elif isinstance(model, PreTrainedModel):
        model.save_pretrained(directory)  # safetensors: the only format transformers 5 writes
    else:
        directory.mkdir()
        save_model(model, str(directory / "model.safetensors"))  # handles tied (shared) tensors


def _load_model(model: nn.Module, directory: Path) -> None:
    if isinstance(model, PeftModel):
        result = set_peft_model_state_dict(model, load_file(str(directory / ADAPTER_WEIGHTS)),
                                           adapter_name=model.active_adapter)
        if result.unexpected_keys:
            raise CheckpointError(f"{directory} does not match the adapter: unexpected {result.unexpected_keys[:5]}")
        return
    if not isinstance(model, PreTrainedModel):
        load_model(model, str(directory / "model.safetensors"), device=str(next(model.parameters()).device))
        return
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    weights: dict[str, torch.Tensor] = {}
    for name in files:
        weights.update(load_file(str(directory / name)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())  # save_pretrained leaves tied copies out
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"{directory} does not match the model: missing {sorted(set(missing) - tied)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")


# --- atomic directories -------------------------------------------------------------------------------------


def write_atomically(final: Path, what: str, write) -> Path:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot write {what} in {final.parent}: {error.strerror or error}") from error
    try:
        return write_directory(final, write)
    except OSError as error:
        raise CheckpointError(f"writing {what} {final} failed ({error.strerror or error}); "
                              "earlier checkpoints are untouched") from error


# --- checkpoints --------------------------------------------------------------------------------------------


def checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `run_dir`, oldest first."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := CHECKPOINT_PATTERN.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, models: Mapping[str, nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                    schedulers: Mapping[str, Any] | None = None, state: Mapping[str, Any] | None = None,
                    tokenizer: PreTrainedTokenizerBase | None = None, keep_last: int = 3,
                    rng: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write `run_dir/checkpoint-{step:08d}` atomically, then keep only the newest `keep_last`.

    `models` are unwrapped modules (not DDP wrappers). `state` is JSON-able loop state (tensors allowed).
    `rng` is one `capture_rng()` per process (rank order); by default this process's.
    """
    rng = list(rng) if rng is not None else [capture_rng()]

    def write(tmp: Path) -> None:
        for name, model in models.items():
            _save_model(model, tmp / name)
        for name, optimizer in (optimizers or {}).items():
            save_state(optimizer.state_dict(), tmp / f"optimizer-{name}")
        for name, scheduler in (schedulers or {}).items():
            save_state(scheduler.state_dict(), tmp / f"scheduler-{name}")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "tokenizer")
        save_state(rng, tmp / "rng")
        save_state({**(state or {}), "step": step}, tmp / Path(STATE_FILE).stem)  # last: marks it complete

    path = write_atomically(Path(run_dir) / f"checkpoint-{step:08d}", "checkpoint", write)
    for old in checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path, models: Mapping[str, nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                    schedulers: Mapping[str, Any] | None = None, rank: int = 0) -> dict[str, Any]:
    """Restore models, optimizers, schedulers and this process's RNG in place; returns the loop state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint: {STATE_FILE} is missing")
    for name, model in models.items():
        if not (path / name).is_dir():
            raise CheckpointError(f"{path} holds no model {name!r}")
        _load_model(model, path / name)
    for name, optimizer in (optimizers or {}).items():
        optimizer.load_state_dict(load_state(path / f"optimizer-{name}"))
    for name, scheduler in (schedulers or {}).items():
        scheduler.load_state_dict(load_state(path / f"scheduler-{name}"))
    rng = load_state(path / "rng")
    restore_rng(rng[rank] if rank < len(rng) else rng[0])
    return load_state(path / Path(STATE_FILE).stem)


# --- the model the registry loads ---------------------------------------------------------------------------


def export_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, card: ModelCard,
                 out_dir: str | Path, dtype: str | None = None, max_shard_size: str = "16MB",
                 extras: Callable[[Path], Any] | None = None) -> Path:
    """Write the final model directory (safetensors shards, tokenizer, model_card.json, checksums.json)
    atomically; `dtype` (e.g. "float16") stores the weights in that type, and loaders compute in float32.
    `extras(directory)` writes what belongs beside the model (a GAIL model's discriminator) in the same atomic step,
    so a reader never finds the model without it or a listing that misses its weights. A model with adapters
    exports its active adapter alone (peft's adapter_config.json names the base it needs), and its tokenizer only
    when it is not the base's."""
    adapter = isinstance(model, PeftModel)
    if not adapter and dtype is not None and weight_dtype(dtype) != model.dtype:
        model = copy.deepcopy(model).to(weight_dtype(dtype))

    def write(tmp: Path) -> None:
        if adapter:
            model.save_pretrained(tmp, selected_adapters=[model.active_adapter])
            if model.active_adapter != "default":  # peft puts any other adapter in a folder of its name
                for file in (tmp / model.active_adapter).iterdir():
                    file.rename(tmp / file.name)
                (tmp / model.active_adapter).rmdir()
            if dtype is not None:
                save_file(stored(load_file(str(tmp / ADAPTER_WEIGHTS)), dtype), str(tmp / ADAPTER_WEIGHTS))
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty card template; ours is model_card.json
        else:
            model.save_pretrained(tmp, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(tmp)
        if adapter and reads_base_tokenizer(tmp):
            for name in TOKENIZER_FILES:  # its base's: load_model_tokenizer reads it from there
                (tmp / name).unlink(missing_ok=True)
        card.save(tmp)
        if extras is not None:
            extras(tmp)
        write_checksums(tmp)  # last, so the listing covers every weight file

    return write_atomically(Path(out_dir).resolve(), "model", write)
