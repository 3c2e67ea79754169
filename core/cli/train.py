"""`python -m core train <recipe> [--config FILE] [--preset NAME] [--resume] [--run-dir DIR] [key=value ...]`.

A run's settings are, in order of precedence: the `key=value` overrides (dotted for nesting, e.g.
`generator.n_layer=4`), `--run-dir`/`--resume`, the preset's section for the recipe
(configs/presets/<NAME>.yaml), the config file (default configs/<recipe>.yaml), the config class's defaults.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from core.paths import REPO_ROOT

CONFIGS_DIR = REPO_ROOT / "configs"
PRESETS_DIR = CONFIGS_DIR / "presets"

# name -> (module, config class, train function). Every train function takes (config, callbacks=()) and returns
# the exported model directory; every config has `run_dir` and `resume`. Adding a recipe is one line here.
RECIPES: dict[str, tuple[str, str, str]] = {
    "pretrain": ("core.engine.mle", "MLEConfig", "train_pretrain"),
    "mle": ("core.engine.mle", "MLEConfig", "train_mle"),
    "emotion": ("core.models.emotion", "EmotionTrainConfig", "train_emotion"),
    "rl_seq2seq": ("core.engine.rl_seq2seq", "RLSeq2SeqConfig", "train_rl_seq2seq"),
    "textgail": ("core.engine.gail", "GAILConfig", "train_gail"),
    "empathygail": ("core.engine.gail", "GAILConfig", "train_gail"),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model: " + ", ".join(RECIPES), description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    # Everything after the recipe is parsed by `options_parser`, which lets key=value pairs and options mix freely
    # (one argparse pass would stop collecting key=value pairs at the first option).
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="[--config FILE] [--preset NAME] [--resume] [--run-dir DIR] [key=value ...]")
    parser.set_defaults(func=run)


def options_parser(recipe_name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m core train {recipe_name}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of the recipe's config fields (default configs/<recipe>.yaml)")
    parser.add_argument("--preset", help=f"a size preset from {PRESETS_DIR.relative_to(REPO_ROOT)}/: "
                                         f"{', '.join(presets()) or 'none yet'}")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run_dir")
    parser.add_argument("--run-dir", help="where checkpoints and metrics.jsonl go")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config fields, e.g. lr=1e-4")
    return parser


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def recipe(name: str) -> tuple[type, Any]:
    """The config class and train function of a recipe."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    module, config_class, function = RECIPES[name]
    loaded = importlib.import_module(module)
    return getattr(loaded, config_class), getattr(loaded, function)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config fields")
    return values


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def build_config(name: str, config_file: str | Path | None = None, preset: str | None = None,
                 overrides: list[str] | None = None):
    """The recipe's config from its file, a preset and overrides (what `train` runs; the app uses it too)."""
    from core.config import apply_overrides, from_dict

    config_class, _ = recipe(name)
    default = CONFIGS_DIR / f"{name}.yaml"
    values = _read_yaml(Path(config_file)) if config_file else _read_yaml(default) if default.is_file() else {}
    if preset:
        preset_file = PRESETS_DIR / f"{preset}.yaml"
        if not preset_file.is_file():
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(presets())}")
        values = merge(values, _read_yaml(preset_file).get(name) or {})
    return from_dict(config_class, apply_overrides(values, overrides))


def run(args: argparse.Namespace) -> int:
    from core.engine.callbacks import NonFiniteLossError
    from core.engine.checkpoint import CheckpointError

    options = options_parser(args.recipe).parse_intermixed_args(args.options)
    overrides = list(options.overrides)
    if options.run_dir:
        overrides.insert(0, f"run_dir={options.run_dir}")
    if options.resume:
        overrides.insert(0, "resume=true")
    config = build_config(args.recipe, options.config, options.preset, overrides)
    _, train = recipe(args.recipe)
    try:
        out = train(config)
    except (NonFiniteLossError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.recipe}: model saved to {out}")
    return 0
