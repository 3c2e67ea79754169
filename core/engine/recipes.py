"""Training recipes: each name maps to its config class and train function, and configs are built from
configs/<recipe>.yaml, a size preset (configs/presets/<NAME>.yaml) and key=value overrides."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from core.config import apply_overrides, from_dict, merge, read_yaml
from core.paths import REPO_ROOT

CONFIGS_DIR = REPO_ROOT / "configs"
PRESETS_DIR = CONFIGS_DIR / "presets"

# name -> (module, config class, train function). Every train function takes (config, callbacks=()) and returns
# the exported model directory; every config has `run_dir` and `resume`. Adding a recipe is one line here.
RECIPES: dict[str, tuple[str, str, str]] = {
    "pretrain": ("core.engine.mle", "MLEConfig", "train_pretrain"),
    "mle": ("core.engine.mle", "MLEConfig", "train_mle"),
    "emotion": ("core.engine.emotion", "EmotionTrainConfig", "train_emotion"),
    "rl_seq2seq": ("core.engine.rl_seq2seq", "RLSeq2SeqConfig", "train_rl_seq2seq"),
    "textgail": ("core.engine.gail", "GAILConfig", "train_gail"),
    "empathygail": ("core.engine.gail", "GAILConfig", "train_gail"),
}


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(preset: str | Path) -> Path:
    """A preset by name (configs/presets/<name>.yaml) or by the path of a YAML file."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(presets())}, or the path of a YAML file")
    return path


def recipe(name: str) -> tuple[type, Any]:
    """The config class and train function of a recipe."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    module, config_class, function = RECIPES[name]
    loaded = importlib.import_module(module)
    return getattr(loaded, config_class), getattr(loaded, function)


def build_config(name: str, config_file: str | Path | None = None, preset: str | None = None,
                 overrides: list[str] | None = None):
    """The recipe's config from its file, a preset and overrides (what `train` runs; the app uses it too)."""
    config_class, _ = recipe(name)
    default = CONFIGS_DIR / f"{name}.yaml"
    values = read_yaml(Path(config_file)) if config_file else read_yaml(default) if default.is_file() else {}
    if preset:
        values = merge(values, read_yaml(preset_path(preset)).get(name) or {})
    return from_dict(config_class, apply_overrides(values, overrides))
