"""Serving the shipped models on this machine, each figure beside the plain way measured in the same run.

    python -m core bench serve [--checkpoints-dir DIR] [--precision auto|float32|bfloat16] [--json FILE]

Start: cold (the base converted from its wheel into an empty cache, then every model loaded, in a new process),
warm (a new process loading every model from the converted base) and the app's (`python app.py` until its page
answers and until it has loaded every model; medians of three starts). One chat reply of the default model, streamed:
time to first token p50/p95, tokens per second while writing, the whole 30-token reply p50/p95. The Compare tab:
every model's 30-token reply, streamed, the models on one base in one batched call; that call's stacked LoRA beside
peft's own mixed batch. The plain way: one unbatched, unstreamed float32 `generate` per reply and per model in turn.
Precision: perplexity per word on ED test replies and the greedy Table 3 replies in float32 and in the precision
served.

Targets (2 CPU cores, quiet machine): first token p50 at most 0.5 s, at least 12 tokens/s, Compare within 1.5x one
model's reply, the app ready with every model within 10 s of its start. The exit status is 0 when every target is
met.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from core import paths
from core.models import base
from core.models.generator import BASE_ROW, Decoding, context_length, is_adapter, native_bfloat16, serving_dtype
from core.models.card import list_models
from core.models.model_thread import on_model_thread
from core.registry import Responder, load_responder, stream_together
from core.scoring.metrics import perplexity
from core.text import collate, encode_batch

# The method's Table 3 prompts: what a person types first in the demo.
PROMPTS = [
    (["I moved to LA a few years ago and I never had the chance to visit home."], "I'm going to see my parents soon!"),
    ([], "He was a very good friend of mine. Last month, he passed away."),
    (["I was in a drive-thru line and someone cut in front of me."], "I was furious and blew up at him."),
    ([], "I had a job interview today and I think it went really well."),
]
REPLY_TOKENS = 30
TARGETS = {"first token p50 (s)": ("<=", 0.5), "tokens/s": (">=", 12.0), "compare / one reply": ("<=", 1.5),
           "app start, every model (s)": ("<=", 10.0)}
MODELS_LOADED = " models loaded in "  # the line the app logs when its warm-up has loaded every model (demo.models)
APP_TIMEOUT = 300.0
APP_STARTS = 3
DEFAULT_MODEL = "empathygail"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_all(checkpoints_dir: str, precision: str) -> dict[str, float]:
    """Every model in `checkpoints_dir` loaded (what a new process pays): seconds, and the process's age then."""
    tic = time.perf_counter()
    dtype = serving_dtype(precision)
    models = [load_responder(card.path, dtype=dtype) for card in list_models(checkpoints_dir)]
    return {"models": len(models), "load_s": time.perf_counter() - tic}


def timed_start(checkpoints_dir: Path, precision: str, cache: Path | None = None) -> dict[str, float]:
    """`load_all` in a new process (imports included), with its own cache when given."""
    env = dict(os.environ, **({paths.CACHE_ENV: str(cache)} if cache else {}))
    code = f"import json; from core.serve_bench import load_all; print(json.dumps(load_all({str(checkpoints_dir)!r}, " \
           f"{precision!r})))"
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"loading the models in a new process failed: {done.stderr.strip()[-500:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "process_s": time.perf_counter() - tic}


def cold_start(checkpoints_dir: Path, precision: str) -> dict[str, float]:
    """A new process with an empty cache: the base is converted from the wheel (copied in, never downloaded)."""
    with tempfile.TemporaryDirectory(prefix="cold-") as cache:
        wheel = paths.cache_dir() / "wheels" / base.WHEEL_FILE
        if wheel.is_file():
            Path(cache, "wheels").mkdir()
            shutil.copy(wheel, Path(cache, "wheels", base.WHEEL_FILE))
        return timed_start(checkpoints_dir, precision, Path(cache))


def app_start(checkpoints_dir: Path, precision: str) -> dict[str, float]:
    """`python app.py` on a free localhost port, as it is served: seconds from its start until its page answers, and
    until it also has every model loaded (it loads them in the background, the page saying so meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="app-start-") as work:
        log_path = Path(work, "app.log")
        with log_path.open("w") as log:
            tic = time.perf_counter()
            app = subprocess.Popen(
                [sys.executable, str(paths.REPO_ROOT / "app.py"), "--checkpoints-dir", str(checkpoints_dir),
                 "--precision", precision, "--work-dir", work, "--host", "127.0.0.1", "--port", str(port)],
                cwd=paths.REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
            try:
                page = None
                while time.perf_counter() - tic < APP_TIMEOUT:
                    if app.poll() is not None:
                        raise RuntimeError(f"the app exited with {app.returncode}: {log_path.read_text()[-500:]}")
                    if page is None:
                        try:
                            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2):
                                page = time.perf_counter() - tic
                        except OSError:
                            pass
                    if page is not None and MODELS_LOADED in log_path.read_text():
                        return {"page_s": page, "models_s": time.perf_counter() - tic}
                    time.sleep(0.1)
                raise RuntimeError(f"the app was not ready within {APP_TIMEOUT:.0f} s: {log_path.read_text()[-500:]}")
            finally:
                app.terminate()
                app.wait()


def stream_reply(responder: Responder, context, decoding: Decoding) -> tuple[float, float, int]:
    """(seconds to the first token, seconds to the whole reply, tokens written) for one streamed reply."""
    tic = time.perf_counter()
    first, steps = None, 0
    for _ in responder.stream_batch([context], decoding):
        first = first or time.perf_counter() - tic
        steps += 1
    return first, time.perf_counter() - tic, steps - 1  # the last item repeats the whole reply


def one_reply(responder: Responder, plain: Responder, replies: int) -> dict[str, float]:
    rows = []
    for i in range(replies):
        decoding = Decoding(max_new_tokens=REPLY_TOKENS, min_new_tokens=REPLY_TOKENS, seed=i)
        context = PROMPTS[i % len(PROMPTS)]
        first, whole, tokens = stream_reply(responder, context, decoding)
        tic = time.perf_counter()
        plain.respond(*context, decoding)
        rows.append((first, whole, tokens, time.perf_counter() - tic))
    firsts, wholes, tokens, plains = zip(*rows)
    return {"first token p50 (s)": statistics.median(firsts), "first token p95 (s)": percentile(firsts, 0.95),
            "tokens/s": sum(t - 1 for t in tokens) / sum(w - f for f, w in zip(firsts, wholes)),
            "reply p50 (s)": statistics.median(wholes), "reply p95 (s)": percentile(wholes, 0.95),
            "plain reply p50 (s)": statistics.median(plains),
            "speed-up, one reply": statistics.median(plains) / statistics.median(wholes)}


def compare_all(responders: list[Responder], plain: list[Responder], one: float, rounds: int) -> dict[str, float]:
    together, in_turn = [], []
    for i in range(rounds):
        decoding = Decoding(max_new_tokens=REPLY_TOKENS, min_new_tokens=REPLY_TOKENS, seed=i)
        context = PROMPTS[i % len(PROMPTS)]
        tic = time.perf_counter()
        for _ in stream_together(responders, context, decoding):
            pass
        together.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        for responder in plain:
            responder.respond(*context, decoding)
        in_turn.append(time.perf_counter() - tic)
    batched = statistics.median(together)
    return {"compare p50 (s)": batched, "compare / one reply": batched / one,
            "plain compare p50 (s)": statistics.median(in_turn),
            "speed-up, compare": statistics.median(in_turn) / batched}


def adapter_rows(responders: list[Responder], rounds: int) -> dict[str, float]:
    """The models on one base in one greedy batched call, a row each: stacked LoRA (`adapter_per_row`, what serves)
    against peft's own mixed batch (`adapter_names`, which loops over the adapters in every layer at every step)."""
    rows = [r for r in responders if getattr(r, "shared", None) is not None]
    if len(rows) < 2:
        return {}
    shared, names = rows[0].shared, [r.adapter or BASE_ROW for r in rows]
    tokenizer, decoding = shared.tokenizer, Decoding(do_sample=False, max_new_tokens=REPLY_TOKENS,
                                                     min_new_tokens=REPLY_TOKENS)
    peft_generate = on_model_thread(torch.no_grad()(shared.peft.generate))  # where every other call runs
    stacked, looped = [], []
    for i in range(rounds):
        contexts = [PROMPTS[i % len(PROMPTS)]] * len(rows)
        tic = time.perf_counter()
        shared.generate_mixed([r.adapter for r in rows], contexts, decoding)
        stacked.append(time.perf_counter() - tic)
        room = context_length(shared.peft) - REPLY_TOKENS  # as generate encodes them
        batch = collate(encode_batch(tokenizer, [(h, p, None) for h, p in contexts], room), tokenizer.pad_token_id,
                        left_pad=True)
        tic = time.perf_counter()
        peft_generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], adapter_names=names,
                      do_sample=False, max_new_tokens=REPLY_TOKENS, min_new_tokens=REPLY_TOKENS,
                      pad_token_id=tokenizer.pad_token_id)
        looped.append(time.perf_counter() - tic)
    return {"adapter rows p50 (s)": statistics.median(stacked), "peft mixed batch p50 (s)": statistics.median(looped),
            "speed-up, adapter rows": statistics.median(looped) / statistics.median(stacked)}


def quality(served: Responder, reference: Responder, examples: int, data_dir: str | None) -> dict[str, float]:
    """Perplexity per word on ED test replies, and the greedy Table 3 replies, in both precisions."""
    from core.scoring.evaluate import EvalConfig, load_rows

    rows = load_rows(EvalConfig(data_dir=data_dir, sources=["empatheticdialogues"], max_examples=examples))
    figures = {}
    for name, responder in (("served", served), ("float32", reference)):
        logprob, words = 0.0, 0
        for start in range(0, len(rows), 16):
            batch = rows[start:start + 16]
            scores = responder.score_batch([(r["history"], r["prompt"]) for r in batch], [r["response"] for r in batch])
            logprob += sum(s.logprob for s in scores)
            words += sum(s.n_words for s in scores)
        figures[f"perplexity per word, {name}"] = perplexity(logprob, words)
    greedy = Decoding(do_sample=False, max_new_tokens=REPLY_TOKENS)
    same = sum(served.respond(h, p, greedy) == reference.respond(h, p, greedy) for h, p in PROMPTS)
    figures["greedy Table 3 replies the same"] = f"{same} of {len(PROMPTS)}"
    figures["examples"] = len(rows)
    return figures


def main(checkpoints_dir: str | None = None, replies: int = 20, precision: str = "auto", rounds: int = 6,
         examples: int = 400, data_dir: str | None = None, cold: bool = True, json_path: str | None = None,
         app_starts: int = APP_STARTS) -> int:
    root = paths.checkpoints_dir(checkpoints_dir)
    cards = list_models(root)
    if not cards:
        print(f"no models in {root}: train them with `python -m core train all --preset cpu` (or small, on a GPU)")
        return 1
    dtype = serving_dtype(precision)
    print(f"serving {len(cards)} models from {root} in {str(dtype).removeprefix('torch.')} ({precision}), "
          f"{torch.get_num_threads()} threads, native bfloat16: {'yes' if native_bfloat16() else 'no'}")
    figures: dict[str, object] = {}
    if cold and any(c.kind == "base" or is_adapter(c.path) for c in cards):
        figures["cold start (s)"] = cold_start(root, precision)["process_s"]
    warm = timed_start(root, precision)
    figures["warm start (s)"], figures["warm start, loading only (s)"] = warm["process_s"], warm["load_s"]
    starts = [app_start(root, precision) for _ in range(app_starts)]  # one start varies by seconds
    figures["app start, page (s)"] = statistics.median(start["page_s"] for start in starts)
    figures["app start, every model (s)"] = statistics.median(start["models_s"] for start in starts)

    served = {card.name: load_responder(card.path, dtype=dtype) for card in cards}
    plain = {card.name: load_responder(card.path, dtype=torch.float32) for card in cards}
    name = next((c.name for c in cards if c.algorithm == DEFAULT_MODEL), cards[0].name)
    for responder in [*served.values(), *plain.values()]:  # the first call pays for lazy initialisation
        responder.respond(*PROMPTS[0], Decoding(max_new_tokens=4, seed=0))
    figures.update(one_reply(served[name], plain[name], replies))
    figures.update(compare_all(list(served.values()), list(plain.values()), figures["reply p50 (s)"], rounds))
    figures.update(adapter_rows(list(served.values()), rounds))
    if examples and dtype != torch.float32 and served[name].card.kind != "seq2seq":
        figures.update(quality(served[name], plain[name], examples, data_dir))

    status = 0
    for key, value in figures.items():
        verdict = ""
        if key in TARGETS:
            sign, target = TARGETS[key]
            met = value <= target if sign == "<=" else value >= target
            status = status if met else 1
            verdict = f"  (target {sign} {target}: {'met' if met else 'missed'})"
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        print(f"  {key:38s} {shown}{verdict}")
    if json_path:
        Path(json_path).write_text(json.dumps({"model": name, "dtype": str(dtype), **figures}, indent=2) + "\n")
    return status
