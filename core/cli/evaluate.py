"""`python -m core evaluate`: generate replies with every model, score them per turn bucket, write the report."""

from __future__ import annotations

import argparse
from dataclasses import replace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score models: perplexity, BLEU, diversity, emotion over 1/2/3+ turns",
        description="Generate a reply to every trajectory of a split with each model (the same decoding for "
                    "all), then write results/table.md, table.csv, plots, examples.md, summary.json and the "
                    "per-example generations.jsonl.")
    parser.add_argument("--models", nargs="+", default=None,
                        help="model directories, folders of them, or model names in --checkpoints-dir "
                             "(default: every model there)")
    parser.add_argument("--checkpoints-dir", default=None, help="where model names are looked up "
                                                               "(default: $EMPATHYGAIL_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory (default: $EMPATHYGAIL_DATA or ../shared/data)")
    parser.add_argument("--split", default=None, help="train, valid or test (default: test)")
    parser.add_argument("--sources", nargs="+", default=None,
                        help="trajectory sources (default: empatheticdialogues dailydialog)")
    parser.add_argument("--seeds", type=int, default=None, help="sampling runs; run s is seeded from s (default: 3)")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding (one run) instead of sampling")
    parser.add_argument("--max-examples", type=int, default=None, help="score a fixed random subset of this size")
    parser.add_argument("--batch-size", type=int, default=None, help="replies per generate call (default: 64)")
    parser.add_argument("--out", default=None, help="output directory (default: results)")
    parser.add_argument("--rescore", action="store_true",
                        help="score <out>/generations.jsonl again without generating")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--encoder", default=None,
                        help="sentence encoder for embedding similarity (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--no-embedding", action="store_true", help="leave embedding similarity out")
    parser.add_argument("--emotion-model", default=None, help="emotion classifier directory, for emotion accuracy")
    parser.add_argument("--discriminator", default=None,
                        help="a discriminator directory, or a model directory with a discriminator/ subfolder; "
                             "it scores every model's replies")
    parser.add_argument("--examples", type=int, default=6, help="example replies in examples.md (default: 6)")
    parser.add_argument("--config", default=None, help="YAML file of EvalConfig fields")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="EvalConfig overrides, e.g. decoding.temperature=0.7 decoding.max_new_tokens=40")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """Defaults, then --config, then --set, then the flags given."""
    from core.config import load_config
    from core.scoring.evaluate import EvalConfig

    config = load_config(EvalConfig, args.config, args.set)
    flags = {"models": args.models, "checkpoints_dir": args.checkpoints_dir, "data_dir": args.data_dir,
             "split": args.split, "sources": args.sources, "seeds": args.seeds, "max_examples": args.max_examples,
             "batch_size": args.batch_size, "out": args.out, "device": args.device, "encoder": args.encoder,
             "emotion_model": args.emotion_model, "discriminator": args.discriminator}
    config = replace(config, **{k: v for k, v in flags.items() if v is not None})
    if args.rescore:
        config = replace(config, rescore=True)
    if args.no_embedding:
        config = replace(config, embedding=False)
    if args.greedy:
        config = replace(config, decoding=replace(config.decoding, do_sample=False))
    return config


def run(args: argparse.Namespace) -> int:
    from core.scoring.evaluate import evaluate
    from core.scoring.report import write_report

    config = config_from_args(args)
    files = write_report(evaluate(config), config.out, n_examples=args.examples)
    for path in files.values():
        print(f"wrote {path}")
    return 0
