"""`python -m core bench <section> --size {tiny,small,gpt2-124m} [--prompts 128 --prompt-tokens 96 --new-tokens 50]`.

Sizes are the pretrain recipe's generator at that preset (configs/pretrain.yaml + configs/presets/<size>.yaml),
with random weights. The tokenizer is the preset's when it has been built, else GPT-2's files (gpt2-124m) or a
throwaway BPE; the embeddings are padded to the size's real vocabulary, so the LM head costs what it would.

`python -m core bench safety [--data-dir DIR]` measures the crisis layer instead (core.safety_bench: recall on the
written phrasings, false-positive rate on the real test prompts); its exit status says whether the targets are met.
`python -m core bench serve [--checkpoints-dir DIR --precision P]` times serving the shipped models (core.serve_bench:
start, first token, tokens/s, Compare, each against the plain way).
The app's load benchmark needs gradio, which core/ never imports: `python -m demo.bench_load`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from core.bench_options import SECTIONS, BenchOptions

# size -> vocabulary: None is the preset's own BPE (configs/presets/<size>.yaml), 50259 GPT-2's + the 2 tags
SIZES = {"tiny": None, "small": None, "gpt2-124m": 50259}
# Sections that measure something other than the generator's speed: name -> (module whose main(**options) prints
# its figures and returns an exit status, those options). `all` means the speed sections only.
STANDALONE = {"safety": ("core.safety_bench", ("data_dir",)),
              "serve": ("core.serve_bench", ("checkpoints_dir", "precision", "data_dir", "json_path"))}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="speed: rollouts, PPO updates, peak memory; the crisis layer's "
                                   "figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="+", choices=[*SECTIONS, "all", *STANDALONE], metavar="SECTION",
                        help=f"one or more of: {', '.join(SECTIONS)}, all (those), {', '.join(STANDALONE)}")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    defaults = BenchOptions()
    for option in fields(BenchOptions):
        flag = "--" + option.name.replace("_", "-")
        kind = str if option.name == "cache_implementation" else int
        parser.add_argument(flag, type=kind, default=getattr(defaults, option.name),
                            help=f"default {getattr(defaults, option.name)}")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="serve: the precision replies are computed in (default auto: see core.models.generator."
                             "serving_dtype)")
    parser.add_argument("--data-dir", help="safety, serve: the datasets whose test prompts are read (default: "
                                           "$EMPATHYGAIL_DATA or ../shared/data)")
    parser.add_argument("--checkpoints-dir", help="serve: the models to load (default: $EMPATHYGAIL_CHECKPOINTS or "
                                                  "checkpoints/)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    status = 0
    for name in [s for s in STANDALONE if s in args.sections]:
        print(f"== {name}")
        module, options = STANDALONE[name]
        status = max(status, importlib.import_module(module).main(**{o: getattr(args, o) for o in options}))
    speed = [s for s in args.sections if s not in STANDALONE]
    return max(status, _speed(args, speed)) if speed else status


def _speed(args: argparse.Namespace, sections: list[str]) -> int:
    from core import bench
    from core.pipeline import pipeline_config
    from core.engine.recipes import build_config

    options = BenchOptions(**{f.name: getattr(args, f.name) for f in fields(BenchOptions)})
    config = build_config("pretrain", preset=args.size)
    setup = bench.prepare(args.size, config.generator, _tokenizer(config.tokenizer, args.size), options,
                          vocab_size=SIZES[args.size] or pipeline_config(args.size).vocab_size, device=args.device)
    results = {}
    for name in SECTIONS if "all" in sections else dict.fromkeys(sections):
        results[name] = bench.SECTIONS[name](setup, options)
        print(f"== {name} ({args.size})")
        for key, value in results[name].items():
            print(f"  {key:28s} {value:.4g}" if isinstance(value, float) else f"  {key:28s} {value}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _tokenizer(path: str | None, size: str):
    from core import paths
    from core.text import load_tokenizer, train_tokenizer

    gpt2_files = paths.data_dir() / "gpt2_tokenizer"
    if path and Path(path).is_dir():
        return load_tokenizer(path)
    if size == "gpt2-124m" and (gpt2_files / "vocab.bpe").is_file():
        return load_tokenizer(gpt2_files)
    return train_tokenizer(["I am so sorry to hear that, how are you feeling today?"] * 8, vocab_size=300,
                           min_frequency=1)
