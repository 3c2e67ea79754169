"""Hostile input for the app's chat and compare: generated messages, histories and decoding values, sent to the
handlers directly and through the running app's API. Every one must be answered (the handlers never raise), the
server must stay up, and it must still serve a normal request afterwards.

    python scripts/fuzz.py [--count 20000] [--api-count 2000] [--seed 0] [--checkpoints-dir DIR]

Without --checkpoints-dir it serves the tiny models of demo/tiny_world.py. tests/test_fuzz.py is the short run.
Through the API, a history that is not a list of chat messages is refused by Gradio's own input check before the
app sees it; such a refusal is an answer too (an error event, the server stays up) and is counted apart.
"""

from __future__ import annotations

import argparse
import random
import reprlib
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the repository root holds core/ and demo/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|bot|>", "<pad>", "[CLS]", "[SEP]", "<s>", "</s>"]
BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"
SPACES = " \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2003\u2028\u2029\u202f\u205f\u3000"
WORDS = ["I", "feel", "so", "sad", "today", "my", "dog", "died", "happy", "job", "lost", "friend", "שלום", "مرحبا",
         "привет", "你好", "こんにちは", "😢", "🏳️‍🌈", "👩‍👩‍👦", "Ω≈ç√", "﷽", "ẞ", "ﬁ", "Ⅻ", "𝕳𝖊𝖑𝖑𝖔", "𐍈", "𓀀"]
MARKUP = ["<script>alert(1)</script>", "![x](javascript:alert(1))", "**" * 50, "```python\n", "<img src=x onerror=1>",
          "$$\\frac{1}{0}$$", "%s%n%x{0}{}", "${jndi:ldap://x/a}", "\\x00\\u0000", "'; DROP TABLE votes; --",
          "../../etc/passwd", "file:///etc/passwd", "{{7*7}}", "\x1b[31mred\x1b[0m", "@everyone"]


def _code_point(rng: random.Random, surrogates: bool) -> str:
    """Any code point: ASCII, the BMP, or the astral planes (private use and unassigned included); lone surrogates
    only when `surrogates` (JSON cannot carry them, so only the handlers get them)."""
    kind = rng.random()
    if kind < 0.3:
        return chr(rng.randrange(0, 0x80))
    if kind < 0.7:
        point = rng.randrange(0x80, 0x10000)
        if 0xD800 <= point < 0xE000 and not surrogates:
            point = rng.randrange(0xE000, 0x10000)
        return chr(point)
    return chr(rng.randrange(0x10000, 0x110000))


def hostile_text(rng: random.Random, surrogates: bool = False) -> str:
    """One hostile message: random Unicode, control, bidi and zero-width characters, combining marks, emoji, markup,
    model tokens, huge (100k characters) and empty strings, or a mix of those."""
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice(["", " ", "\n\n", "\x00", "\u200b"])
    if kind == 1:
        return "".join(rng.choice(SPACES) for _ in range(rng.randrange(1, 50)))
    if kind == 2:
        return "".join(chr(rng.choice([*range(0x20), 0x7F, *range(0x80, 0xA0)])) for _ in range(rng.randrange(1, 80)))
    if kind == 3:
        return "".join(_code_point(rng, surrogates) for _ in range(rng.randrange(1, 200)))
    if kind == 4:
        return " ".join(rng.choice(WORDS) + rng.choice(BIDI) for _ in range(rng.randrange(1, 30)))
    if kind == 5:
        return "".join(c + rng.choice(ZERO_WIDTH) for c in " ".join(rng.choices(WORDS, k=rng.randrange(1, 20))))
    if kind == 6:  # "zalgo": a letter under hundreds of combining marks
        return "".join(c + "".join(chr(rng.randrange(0x300, 0x370)) for _ in range(rng.randrange(0, 60)))
                       for c in rng.choice(WORDS))
    if kind == 7:
        return "".join(rng.choices(WORDS[17:], k=rng.randrange(1, 400)))
    if kind == 8:
        size = rng.choice([100_000, 100_001, 250_000])
        unit = rng.choice(["a", "😢", "I feel sad. ", "\u200b", "\x00", "שלום ", "\u0301"])
        return (unit * (size // len(unit) + 1))[:size]
    if kind == 9:
        return "x" * rng.randrange(1_000, 20_000)  # one word longer than any context
    if kind == 10:
        return " ".join(rng.choices(MARKUP, k=rng.randrange(1, 6)))
    if kind == 11:
        return " ".join(rng.choices(SPECIAL_TOKENS + WORDS[:12], k=rng.randrange(1, 40)))
    if kind == 12:
        return " ".join(rng.choices(WORDS, k=rng.randrange(1, 30)))  # ordinary-looking, many scripts
    return "".join(hostile_text(rng, surrogates) for _ in range(rng.randrange(2, 4)))[:120_000]


def hostile_value(rng: random.Random) -> Any:
    """Something that is not a string where a string is expected (JSON types only)."""
    return rng.choice([None, 0, -1, 7, 2**63, 1.5, -0.0, True, False, [], ["a", "b"], {}, {"text": "hi"},
                       {"type": "text", "text": "hi"}, [[["deep"]]]])


def _message(rng: random.Random, surrogates: bool) -> Any:
    """One entry of a history: a good message, one with a hostile text, a wrong role, a missing or odd content."""
    role = rng.choice(["user", "assistant", "user", "assistant", "system", "wizard", "", None, 3, ["user"]])
    content = rng.choice([
        lambda: hostile_text(rng, surrogates), lambda: hostile_text(rng, surrogates),
        lambda: [{"type": "text", "text": hostile_text(rng, surrogates)}],
        lambda: {"type": "image", "url": "file:///etc/passwd"}, lambda: {"path": "/etc/passwd"},
        lambda: hostile_value(rng), lambda: None])()
    shape = rng.random()
    if shape < 0.7:
        return {"role": role, "content": content}
    if shape < 0.8:
        return {"role": role}  # content missing
    if shape < 0.9:
        return [hostile_text(rng, surrogates), hostile_text(rng, surrogates)]  # Gradio 3's (user, bot) pairs
    return hostile_value(rng)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def hostile_history(rng: random.Random, surrogates: bool = False, deep: bool = False) -> Any:
    """A chat history as the Chatbot sends it (hostile texts, as strings or text blocks, 0 to 2,000 messages), or
    anything else in its place: wrong roles, missing or odd content, Gradio 3's pairs, numbers, nesting. `deep` adds
    content nested 5,000 lists deep (Python callers only: JSON parsers stop far earlier)."""
    kind = rng.random()
    if kind < 0.35:
        return [{"role": rng.choice(["user", "assistant"]),
                 "content": [{"type": "text", "text": hostile_text(rng, surrogates)}] if rng.random() < 0.7
                 else hostile_text(rng, surrogates)}
                for _ in range(rng.choice([0, 1, 2, 5, 20]))]
    if kind < 0.40:
        return [{"role": ("user", "assistant")[i % 2], "content": [{"type": "text", "text": f"message {i}"}]}
                for i in range(rng.choice([200, 2000]))]
    if kind < 0.80:
        return [_message(rng, surrogates) for _ in range(rng.randrange(1, 6))]
    if kind < 0.85:
        return [{"role": "user", "content": _nested(rng.choice([10, 50, 5000 if deep else 100]))}]
    return rng.choice([None, "a string", 42, 3.5, True, {"role": "user", "content": "hi"}, [[]], [None], _nested(5)])


def gradio_accepts(history: Any) -> bool:
    """Whether Gradio 6's Chatbot takes `history` from an API call: None, or a list of user/assistant messages whose
    content is a list of text blocks. Anything else it refuses before the app sees it."""
    def text_blocks(content: Any) -> bool:
        return isinstance(content, list) and all(
            isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in content)

    return history is None or isinstance(history, list) and all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and text_blocks(m.get("content"))
        for m in history)


SLIDERS = {"temperature": (0.05, 2.0), "top_p": (0.05, 1.0), "max_new_tokens": (1, 100)}  # the UI's ranges


def hostile_decoding(rng: random.Random, json_only: bool = True, rate: float = 0.2) -> dict[str, Any]:
    """temperature, top_p, max_new_tokens, seed, greedy: mostly small sane values (so that thousands of cases stay
    quick), now and then out of range, huge, negative or not numbers at all (those fall back to the defaults, which
    cost up to 50 tokens, so they are rarer for max_new_tokens)."""
    def pick(sane, hostile, share=rate):
        return rng.choice(hostile) if rng.random() < share else sane

    odd = [] if json_only else [float("nan"), float("inf"), "abc", None, [], {}]
    return {"temperature": pick(round(rng.uniform(0.05, 2.0), 2), [0, -1, 1e308, 2.0000001, *odd]),
            "top_p": pick(round(rng.uniform(0.05, 1.0), 2), [0, -5, 1.5, 1e308, *odd]),
            "max_new_tokens": pick(rng.randrange(1, 5), [0, -3, 1.7, 100, 10**9, *odd], share=rate / 4),
            "seed": pick(rng.randrange(2**31), [None, -1, 2**64, 2**200, 1.5, *odd]),
            "greedy": pick(rng.random() < 0.3, [0, 1, None] + ([] if json_only else ["yes", []]))}


def in_ranges(decoding: dict[str, Any]) -> bool:
    """Whether the sliders' values lie in the UI's ranges (Gradio refuses others through the API)."""
    return all(low <= decoding[name] <= high for name, (low, high) in SLIDERS.items())


# --- runs ----------------------------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    cases: int = 0
    by_endpoint: Counter = field(default_factory=Counter)
    answered: int = 0
    refused: int = 0  # API only: Gradio's input check turned a malformed value away (an error event)
    failures: list[str] = field(default_factory=list)  # handler exceptions, unexpected refusals, lost connections
    seconds: float = 0.0

    def describe(self, what: str) -> str:
        kinds = Counter(f.split(":")[0] for f in self.failures)  # endpoint and exception type
        lines = [f"{what}: {self.cases} cases ({', '.join(f'{k} {v}' for k, v in sorted(self.by_endpoint.items()))}) "
                 f"in {self.seconds:.1f} s: answered {self.answered}, refused by Gradio's input check {self.refused}, "
                 f"failed {len(self.failures)}" + (f" ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if kinds
                                                   else "")]
        return "\n".join(lines + [f"  {f}" for f in self.failures[:10]])


def _short(value: Any) -> str:
    """A repr bounded in depth and length: inputs nest thousands of lists deep and run to 250k characters."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict = 4, 80, 80, 4, 4
    return short.repr(value)


def handler_case(rng: random.Random, deep: bool = False) -> tuple[str, dict[str, Any]]:
    """(endpoint, keyword arguments) for one direct call, with anything Python can pass in."""
    endpoint = rng.choices(["chat", "compare", "undo"], weights=[0.65, 0.15, 0.2])[0]
    text = lambda: hostile_text(rng, surrogates=True) if rng.random() < 0.85 else hostile_value(rng)  # noqa: E731
    if endpoint == "undo":
        return endpoint, {"history": hostile_history(rng, surrogates=True, deep=deep)}
    decoding = hostile_decoding(rng, json_only=False)
    if endpoint == "compare":
        return endpoint, {"history_text": text(), "prompt": text(), **decoding}
    model = rng.choice([None, "", 5, "../../etc/passwd", "MLE\x00", ["MLE"]]) if rng.random() < 0.1 else None
    return endpoint, {"message": text(), "history": hostile_history(rng, surrogates=True, deep=deep),
                      "model": model, **decoding}


def fuzz_handlers(store, settings, count: int, seed: int = 0, deep: bool = False) -> FuzzResult:
    """`count` direct calls of the chat, compare and undo handlers; every one must return (chat: run to its end)."""
    from demo import chat, compare

    rng, result, started = random.Random(seed), FuzzResult(), time.perf_counter()
    labels = store.labels()
    for _ in range(count):
        endpoint, kwargs = handler_case(rng, deep)
        if endpoint == "chat" and kwargs["model"] is None:
            kwargs["model"] = rng.choice(labels)
        try:
            if endpoint == "chat":
                for _ in chat.respond(store, settings, **kwargs):
                    pass
            elif endpoint == "compare":
                for _ in compare.compare(store, settings, **kwargs):
                    pass
            else:
                chat.undo(**kwargs)
            result.answered += 1
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            result.failures.append(f"{endpoint} {type(error).__name__}: {str(error)[:160]} at {where.filename}:"
                                   f"{where.lineno}; input {_short(kwargs)}")
        result.cases += 1
        result.by_endpoint[endpoint] += 1
    result.seconds = time.perf_counter() - started
    return result


def api_case(rng: random.Random, labels: list[str]) -> tuple[str, dict[str, Any], bool]:
    """(api name, arguments, whether Gradio passes them to the app) for one request through gradio_client: JSON
    values only. Texts of any kind and type are passed; malformed histories and out-of-range sliders are not."""
    decoding = hostile_decoding(rng, rate=0.05)
    if rng.random() < 0.25:
        history_text = hostile_text(rng) if rng.random() < 0.9 else hostile_value(rng)
        return "/compare", {"history_text": history_text, "prompt": hostile_text(rng), **decoding}, in_ranges(decoding)
    if rng.random() < 0.6:  # most histories as the Chatbot sends them, so that most requests reach the app
        history = [{"role": rng.choice(["user", "assistant"]), "content": [{"type": "text", "text": hostile_text(rng)}]}
                   for _ in range(rng.choice([0, 1, 2, 6]))]
    else:
        history = hostile_history(rng)
    message = hostile_text(rng) if rng.random() < 0.9 else hostile_value(rng)
    return "/respond", {"message": message, "history": history, "model": rng.choice(labels), **decoding}, \
        gradio_accepts(history) and in_ranges(decoding)


def fuzz_api(url: str, labels: list[str], count: int, seed: int = 0, timeout: float = 120.0) -> FuzzResult:
    """`count` requests through the app's API. What Gradio passes to the app must be answered, what it refuses must
    be refused cleanly (an error event, nothing else); a lost connection or a timeout is a failure."""
    from gradio_client.exceptions import AppError

    from demo.app_process import client

    rng, result, started = random.Random(seed), FuzzResult(), time.perf_counter()
    api = client(url)
    for _ in range(count):
        name, kwargs, passed = api_case(rng, labels)
        try:
            api.submit(**kwargs, api_name=name).result(timeout=timeout)
            result.answered += 1
        except AppError as error:
            if passed:
                result.failures.append(f"{name} refused: {str(error)[:120]}; input {_short(kwargs)}")
            else:
                result.refused += 1
        except Exception as error:  # the connection broke, or no answer in time
            result.failures.append(f"{name} {type(error).__name__}: {str(error)[:160]}; input {_short(kwargs)}")
        result.cases += 1
        result.by_endpoint[name] += 1
    result.seconds = time.perf_counter() - started
    return result


def normal_request(url: str, label: str) -> bool:
    """A plain chat turn still gets a reply."""
    from demo.app_process import client

    api = client(url)
    _, history, _, _ = api.predict(message="I passed my exam!", history=[], model=label, temperature=0.9, top_p=0.9,
                                   max_new_tokens=8, seed=1, greedy=False, api_name="/respond")
    return bool(history) and history[-1]["role"] == "assistant" and bool(history[-1]["content"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/fuzz.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="direct handler calls (default 20000)")
    parser.add_argument("--api-count", type=int, default=2_000, help="requests through the API (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoints-dir", help="models to serve (default: the tiny models, built here)")
    parser.add_argument("--shallow", action="store_true", help="no histories nested thousands of lists deep")
    args = parser.parse_args(argv)

    from demo.app import build_app, launch
    from demo.app_process import free_port
    from demo.models import ModelStore
    from demo.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    if args.checkpoints_dir:
        checkpoints = Path(args.checkpoints_dir)
    else:
        from demo.tiny_world import build_world

        checkpoints = build_world(root)["checkpoints"]
    settings = Settings(checkpoints_dir=checkpoints, results_dir=root / "results", work_dir=root / "work",
                        data_dir=root / "no-data", host="127.0.0.1", port=None)
    store = ModelStore(settings)
    handlers = fuzz_handlers(store, settings, args.count, args.seed, deep=not args.shallow)
    print(handlers.describe("handlers"), flush=True)

    settings.port = free_port()
    app = build_app(settings)
    try:
        _, url, _ = launch(app, settings, prevent_thread_lock=True, quiet=True)
        through_api = fuzz_api(url, app.store.labels(), args.api_count, args.seed)
        print(through_api.describe("API"))
        still_serving = normal_request(url, app.store.labels()[0])
    finally:
        app.close()
    print(f"a normal request afterwards: {'answered' if still_serving else 'NOT answered'}")
    return 0 if still_serving and not handlers.failures and not through_api.failures else 1


if __name__ == "__main__":
    sys.exit(main())
