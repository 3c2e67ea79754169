"""Checkpoint safety: weights load only from safetensors files inside the configured directories.

`check_checkpoint_dir` is called before any model is loaded from a path that a person chose (UI, CLI): it refuses
paths that leave the allowed roots (through "..", symlinks or absolute paths), directories holding pickle weights
(loading those can run arbitrary code), directories without safetensors, safetensors files whose header does not
parse or whose size does not match it (truncated or tampered), and files whose SHA-256 differs from the
`checksums.json` written beside them by `write_checksums` when the checkpoint was saved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from safetensors import safe_open

from core import paths

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CHECKSUMS = "checksums.json"


class CheckpointError(ValueError):
    """A checkpoint directory that must not be loaded; the message names the path and what is wrong."""


def safe_path(path: str | os.PathLike, allowed_roots: Iterable[str | os.PathLike] | None = None) -> Path:
    """`path` resolved (symlinks and ".." followed), or CheckpointError when it lies outside every allowed root."""
    roots = [Path(root).expanduser().resolve() for root in (allowed_roots or [paths.checkpoints_dir()])]
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as error:  # symlink loops, NUL bytes
        raise CheckpointError(f"checkpoint path {str(path)!r} cannot be resolved: {error}") from error
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise CheckpointError(f"checkpoint path {str(path)!r} resolves to {resolved}, outside the allowed "
                              f"directories ({allowed})")
    return resolved


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.safetensors") if p.is_file())


def _check_safetensors(file: Path) -> None:
    """The header parses and describes exactly the bytes in the file (safetensors checks both on opening)."""
    try:
        with safe_open(file, framework="numpy") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own error type, and OSError for unreadable files
        raise CheckpointError(f"checkpoint file {file} is not a valid safetensors file (truncated or tampered?): "
                              f"{error}") from error


def _check_checksums(directory: Path, files: list[Path]) -> None:
    listing = directory / CHECKSUMS
    try:
        expected = json.loads(listing.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{listing} cannot be read as JSON: {error}") from error
    if not isinstance(expected, dict):
        raise CheckpointError(f"{listing} must map file names to SHA-256 hex digests")
    for file in files:
        name = file.relative_to(directory).as_posix()
        if name not in expected:
            raise CheckpointError(f"checkpoint file {file} is not listed in {listing} (added after saving?)")
        if sha256_file(file) != expected[name]:
            raise CheckpointError(f"checkpoint file {file} does not match its SHA-256 in {listing} (tampered or "
                                  f"corrupted)")


def check_checkpoint_dir(path: str | os.PathLike, allowed_roots: Iterable[str | os.PathLike] | None = None) -> Path:
    """The resolved checkpoint directory, once it is inside `allowed_roots` (default: the checkpoints directory),
    holds safetensors weights only, every one of them parses, and matches `checksums.json` when that is present."""
    directory = safe_path(path, allowed_roots)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist or is not a directory")
    roots = allowed_roots or [paths.checkpoints_dir()]
    files = _weight_files(directory)
    for file in files:
        safe_path(file, roots)  # a symlinked weight file must not reach outside either
    pickles = sorted(p for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        names = ", ".join(str(p.relative_to(directory)) for p in pickles[:5])
        raise CheckpointError(f"checkpoint directory {directory} holds pickle weight files ({names}); only "
                              f"safetensors are loaded, because unpickling can run arbitrary code")
    if not files:
        raise CheckpointError(f"checkpoint directory {directory} holds no *.safetensors weights")
    for file in files:
        _check_safetensors(file)
    if (directory / CHECKSUMS).exists():
        _check_checksums(directory, files)
    return directory


def write_checksums(directory: str | os.PathLike) -> Path:
    """Write `checksums.json` (SHA-256 of every *.safetensors file, by path relative to `directory`); savers call
    this after the weights are written."""
    directory = Path(directory)
    files = _weight_files(directory)
    if not files:
        raise CheckpointError(f"checkpoint directory {directory} holds no *.safetensors weights to checksum")
    listing = {file.relative_to(directory).as_posix(): sha256_file(file) for file in files}
    target = directory / CHECKSUMS
    partial = target.with_suffix(".json.tmp")
    partial.write_text(json.dumps(listing, indent=2, sort_keys=True) + "\n")
    os.replace(partial, target)  # atomic: a reader never sees half a listing
    return target
