"""`python -m core votes report|merge`: the blind arena's judgements (the app's Arena tab) as ratings, and merging
judgements exported on other machines.

    python -m core votes report [--votes runs/app/arena.jsonl] [--out results/arena]
    python -m core votes merge exported.jsonl [...] [--votes runs/app/arena.jsonl]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import paths


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("votes", help="arena ratings (Bradley-Terry, 95%% intervals) and merging votes",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["report", "merge"])
    parser.add_argument("files", nargs="*", help="merge: exported vote files (JSON lines) to add")
    parser.add_argument("--votes", help=f"the votes file (default: the app's, $EMPATHYGAIL_APP_DIR/"
                                        f"{paths.ARENA_VOTES} or runs/app/{paths.ARENA_VOTES})")
    parser.add_argument("--out", default="results/arena", help="report: where the files go (default results/arena)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="report: resamples for the intervals")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.scoring import votes

    path = Path(args.votes) if args.votes else paths.app_dir() / paths.ARENA_VOTES
    if args.action == "report":
        for file in votes.report(path, args.out, args.bootstrap):
            print(f"wrote {file}")
        print(votes.ratings(votes.read_votes(path), bootstrap=args.bootstrap).to_string(index=False))
        return 0
    if not args.files:
        raise ValueError("merge: name the exported vote files to add")
    for file in args.files:
        added, skipped = votes.merge_file(path, file)
        print(f"{file}: {added} votes added to {path}, {skipped} skipped (already there, or not a vote)")
    return 0
