"""The command line: `python -m core <command> --help`.

Each command lives in its own module under core/cli/ and exposes `add_parser(subparsers)`, which registers
the command and sets `func` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["base", "data", "tokenizer", "train", "evaluate", "chat", "bench", "votes"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="EmpathyGAIL: data, training, scoring.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"core.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
