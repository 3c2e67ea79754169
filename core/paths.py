"""Where the project finds its data, checkpoints and caches (each overridable by option or environment)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "EMPATHYGAIL_DATA"
CACHE_ENV = "EMPATHYGAIL_CACHE"
CHECKPOINTS_ENV = "EMPATHYGAIL_CHECKPOINTS"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else $EMPATHYGAIL_DATA, else ../shared/data beside the repository."""
    chosen = path or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    chosen = path or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache"
    return Path(chosen).expanduser().resolve()


def checkpoints_dir(path: str | os.PathLike | None = None) -> Path:
    chosen = path or os.environ.get(CHECKPOINTS_ENV) or REPO_ROOT / "checkpoints"
    return Path(chosen).expanduser().resolve()
