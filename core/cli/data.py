"""`python -m core data build|stats`: build and cache the expert trajectories, or count them."""

from __future__ import annotations

import argparse
import json
import time

from core import paths
from core.config import load_config


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="read the datasets; build, cache and count expert trajectories")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build the trajectories (or find them in the cache) and save them")
    stats = actions.add_parser("stats", help="build from the raw files and print counts, build time, read reports")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    for action, func in ((build, run_build), (stats, run_stats)):
        _add_config_options(action)
        action.set_defaults(func=func)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of DataConfig fields")
    parser.add_argument("--data-dir", help=f"data directory (default ${paths.DATA_ENV} or ../shared/data)")
    parser.add_argument("--sources", help="comma-separated: empatheticdialogues,dailydialog,quotes,reframes")
    parser.add_argument("--split-mode", choices=["official", "random"])
    parser.add_argument("--overlapping", action="store_true", help="a trajectory at every speaker change")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--cache-dir", help=f"cache directory (default ${paths.CACHE_ENV} or .cache/)")
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the public EmpatheticDialogues and DailyDialog releases into <cache>/downloads and read those",
    )


def _config(args: argparse.Namespace):
    from core.data import DataConfig

    overrides = [
        f"{name}={value}"
        for name, value in (
            ("data_dir", args.data_dir),
            ("sources", args.sources),
            ("split_mode", args.split_mode),
            ("seed", args.seed),
            ("cache_dir", args.cache_dir),
        )
        if value is not None
    ]
    if args.overlapping:
        overrides.append("overlapping=true")
    if args.download:
        overrides += _download(args)
    return load_config(DataConfig, args.config, overrides)


def _download(args: argparse.Namespace) -> list[str]:
    from core.data import dailydialog, empathetic

    dest = paths.cache_dir(args.cache_dir) / "downloads"
    print(f"downloading the public releases into {dest} ...")
    empathetic.download(dest)
    dailydialog.download(dest)
    return [f"data_dir={dest}"] + ([] if args.sources else ["sources=empatheticdialogues,dailydialog"])


def run_build(args: argparse.Namespace) -> int:
    import datasets

    from core.data.trajectories import cache_path, load_trajectories

    datasets.disable_progress_bars()  # the save takes a fraction of a second; its bars would only be noise
    config = _config(args)
    target = cache_path(config)
    cached = (target / "dataset_dict.json").is_file()
    start = time.perf_counter()
    trajectories = load_trajectories(config)
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{split} {len(rows):,}" for split, rows in trajectories.items())
    print(f"{'loaded' if cached else 'built'} in {seconds:.2f} s: {sizes}")
    print(f"cache: {target}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from core.data.stats import format_stats, measure

    stats, reports = measure(_config(args))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats, reports))
    return 0
