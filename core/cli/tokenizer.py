"""`python -m core tokenizer`: the generator's tokenizer, saved with `save_pretrained`.

By default a byte-level BPE (GPT-2's scheme) trained on the training split's utterances, the offline stand-in
for GPT-2's vocabulary. `--from gpt2` (the hub) or `--from ../shared/data/gpt2_tokenizer` (GPT-2's own
encoder.json + vocab.bpe) keeps GPT-2's BPE instead; either way the speaker tags are added as special tokens.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.paths import TOKENIZER_DIR


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train the byte-level BPE (or take GPT-2's) and save it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, help="BPE vocabulary size (default: the shipped size, "
                        "core.text.VOCAB_SIZE)")
    parser.add_argument("--min-frequency", type=int, default=2, help="a merge needs this many occurrences")
    parser.add_argument("--out", default=TOKENIZER_DIR, help=f"output directory (default {TOKENIZER_DIR})")
    parser.add_argument("--data-dir", help="data directory (default $EMPATHYGAIL_DATA or ../shared/data)")
    parser.add_argument("--sources", help="comma-separated sources to train on (default: all)")
    parser.add_argument("--cache-dir", help="trajectory cache (default $EMPATHYGAIL_CACHE or .cache/)")
    parser.add_argument("--from", dest="source", metavar="NAME_OR_DIR",
                        help="use an existing tokenizer instead of training: `gpt2` or a directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.data import DataConfig
    from core.engine.mle import training_texts
    from core.text import VOCAB_SIZE, load_tokenizer, train_tokenizer

    started = time.time()
    out = Path(args.out)
    if args.source:
        try:
            tokenizer = load_tokenizer(args.source)
        except OSError as error:  # a hub name while offline, a broken directory
            raise ValueError(f"cannot load tokenizer {args.source!r}: {error}") from error
        what = f"from {args.source}"
    else:
        given = {"data_dir": args.data_dir, "cache_dir": args.cache_dir,
                 "sources": tuple(args.sources.split(",")) if args.sources else None}
        texts = training_texts(DataConfig(**{k: v for k, v in given.items() if v}))
        args.vocab_size = args.vocab_size or VOCAB_SIZE
        if args.vocab_size < 300:
            raise ValueError(f"--vocab-size {args.vocab_size} is too small: byte-level BPE needs 256 byte tokens "
                             "plus the special tokens")
        tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size, min_frequency=args.min_frequency)
        what = f"trained on {len(texts):,} training-split utterances"
    tokenizer.save_pretrained(out)
    print(f"tokenizer ({len(tokenizer):,} tokens, {what}) saved to {out} in {time.time() - started:.1f} s")
    return 0
