"""`python -m core train <recipe> [--config FILE] [--preset NAME] [--resume] [--run-dir DIR] [key=value ...]`.

`python -m core train all --preset NAME [--stages a,b] [key=value ...]` runs the whole pipeline in order
(tokenizer, pretrain, mle, emotion, rl_seq2seq, textgail, empathygail, evaluate), resuming what is done.

A run's settings are, in order of precedence: the `key=value` overrides (dotted for nesting, e.g.
`generator.n_layer=4`), `--run-dir`/`--resume`, the preset's section for the recipe
(configs/presets/<NAME>.yaml), the config file (default configs/<recipe>.yaml), the config class's defaults.
"""

from __future__ import annotations

import argparse
import sys

from core.engine.recipes import PRESETS_DIR, RECIPES, build_config, presets, recipe
from core.paths import REPO_ROOT


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model: " + ", ".join([*RECIPES, "all"]), description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=[*sorted(RECIPES), "all"])
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
    if recipe_name == "all":
        parser.add_argument("--stages", help="comma-separated stages to run (default: all, in order)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config fields, e.g. lr=1e-4")
    return parser


def run(args: argparse.Namespace) -> int:
    options = options_parser(args.recipe).parse_intermixed_args(args.options)  # before torch: `--help` stays fast
    from core.engine.callbacks import NonFiniteLossError
    from core.engine.checkpoint import CheckpointError

    if args.recipe == "all":
        from core.pipeline import STAGES, run_pipeline

        if options.config or options.run_dir:
            raise ValueError("train all takes --preset and key=value overrides; --config and --run-dir are per recipe")
        stages = options.stages.split(",") if options.stages else STAGES
        try:
            run_pipeline(options.preset, stages, options.overrides)
        except (NonFiniteLossError, CheckpointError, OSError) as error:  # OSError: unwritable or full disk
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    overrides = list(options.overrides)
    if options.run_dir:
        overrides.insert(0, f"run_dir={options.run_dir}")
    if options.resume:
        overrides.insert(0, "resume=true")
    config = build_config(args.recipe, options.config, options.preset, overrides)
    _, train = recipe(args.recipe)
    try:
        out = train(config)
    except (NonFiniteLossError, CheckpointError, OSError) as error:  # OSError: unwritable or full disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.recipe}: model saved to {out}")
    return 0
