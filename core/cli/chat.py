"""`python -m core chat`: talk to a trained model in the terminal, through the same safety layer as the app."""

from __future__ import annotations

import argparse
import sys

from core import paths


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal",
                                   description="Multi-turn chat in the terminal. /reset starts over, /quit leaves.")
    parser.add_argument("--model", default="empathygail", help="model name (from its card) or model directory")
    parser.add_argument("--checkpoints-dir", default=None, help="where to look for models (default: checkpoints/)")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.models.generator import Decoding
    from core.models.card import find_model
    from core.registry import load_responder
    from core.safety import NOTICE

    responder = load_responder(find_model(args.model, paths.checkpoints_dir(args.checkpoints_dir)))
    decoding = Decoding(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                        seed=args.seed)
    print(f"{responder.card.name} ({responder.card.algorithm}). {NOTICE}\n/reset starts over, /quit leaves.")
    history: list[str] = []
    while True:
        try:
            prompt = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if prompt == "/quit":
            return 0
        if prompt == "/reset":
            history = []
            continue
        if not prompt:
            continue
        reply = show_streamed(responder, history, prompt, decoding)
        history += [prompt, reply]


def show_streamed(responder, history: list[str], prompt: str, decoding, out=sys.stdout) -> str:
    """Print the reply as it is written (through `safe_stream`); returns the reply that was kept. A replaced reply
    is erased from the line before its replacement is printed."""
    from core.safety import safe_stream

    printed = ""
    out.write("bot> ")
    for replies in safe_stream(history, prompt, 1, lambda: responder.stream_batch([(history, prompt)], decoding)):
        text = replies[0].text
        if text.startswith(printed):
            out.write(text[len(printed):])
        else:
            out.write("\r\033[K" + "bot> " + text)
        printed = text
        out.flush()
    out.write("\n")
    return printed
