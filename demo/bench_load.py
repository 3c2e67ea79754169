"""Load benchmark: many chat clients at once against the running app, while a training run goes on.

    python -m demo.bench_load [--clients 16 --requests 8 --with-training] [--checkpoints-dir DIR --data-dir DIR]

Starts `python app.py` on a free localhost port (its own process, as it is served: demo/app_process.py) with the
tiny models and data of demo/tiny_world.py (or the models in --checkpoints-dir and the data in --data-dir),
optionally starts a short MLE run through the /train endpoint, and drives /respond with `--clients` concurrent
gradio_client clients, `--requests` chat turns each. Prints requests, answers, errors, dropped requests, p50/p95
latency, and whether the training run finished unaffected: all its steps logged, its model exported complete, its
time and final weights against the same run without load. Everything is bounded in count and time, and the app is
stopped at the end. Exit status 0 when nothing failed, nothing was dropped and the training run finished complete.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import paths
from core.models.card import list_models
from core.serve_bench import percentile
from demo.app_process import App, client
from demo.settings import Settings
from demo.tiny_world import build_world, write_data_dir

PROMPTS = [
    "I lost my job today.", "My dog died last week.", "I passed my exam!", "I got a new puppy.",
    "My car broke down again.", "I am nervous about my interview.", "My sister is visiting tomorrow.",
    "I could not sleep last night.", "I'm going to see my parents soon!", "I had a job interview today.",
]
TURNS_PER_CONVERSATION = 4  # a client starts a new conversation after this many turns
PROGRESS = re.compile(r"</b>: (running|stopping after this step|finished|stopped|failed), step (\d+) of (\d+)")


@dataclass
class Outcome:
    latency_s: float
    ok: bool = False
    error: str = ""  # an exception, or a ⚠️ status from the app
    dropped: bool = False  # no answer within the request timeout, or never sent before the deadline


@dataclass
class TrainingResult:
    name: str = ""
    state: str = "not started"
    steps: int = 0
    total: int = 0
    seconds: float = 0.0  # from its start event to its end event
    under_load_throughout: bool = False  # the chat load began before the run's start event and ended after its end
    metrics_complete: bool = False  # metrics.jsonl holds each step once, and the run's end event
    model_complete: bool = False  # the exported model's card says complete, and it loads through the registry
    weights_equal_alone: bool | None = None  # None: no run without load to compare with
    seconds_alone: float | None = None
    note: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished" and self.metrics_complete and self.model_complete


@dataclass
class Report:
    clients: int
    requests_per_client: int
    max_new_tokens: int
    concurrency: int
    max_batch: int
    requests: int = 0
    answered: int = 0
    errors: int = 0
    dropped: int = 0
    p50_s: float = float("nan")
    p95_s: float = float("nan")
    max_s: float = float("nan")
    wall_s: float = 0.0
    throughput_per_s: float = 0.0
    error_examples: list[str] = field(default_factory=list)
    training: TrainingResult | None = None

    @property
    def passed(self) -> bool:
        return not self.errors and not self.dropped and (self.training is None or self.training.finished)


# --- chat load ---------------------------------------------------------------------------------------------


def chat_client(url: str, index: int, requests: int, model: str, max_new_tokens: int, request_timeout: float,
                deadline: float) -> list[Outcome]:
    """One visitor: `requests` chat turns in conversations of a few turns, each timed from send to final reply."""
    outcomes: list[Outcome] = []
    try:
        api = client(url)
    except Exception as error:  # the app refused the connection: every turn of this client failed
        return [Outcome(0.0, error=f"connect: {type(error).__name__}: {error}"[:300])] * requests
    history: list = []
    for turn in range(requests):
        if time.time() > deadline:
            outcomes += [Outcome(0.0, dropped=True)] * (requests - turn)
            break
        if turn % TURNS_PER_CONVERSATION == 0:
            history = []
        message = PROMPTS[(index * 7 + turn) % len(PROMPTS)]
        start = time.perf_counter()
        try:
            job = api.submit(message=message, history=history, model=model, temperature=0.9, top_p=0.9,
                             max_new_tokens=max_new_tokens, seed=None, greedy=False, api_name="/respond")
            _, history, _, status = job.result(timeout=request_timeout)
        except TimeoutError:
            outcomes.append(Outcome(time.perf_counter() - start, dropped=True))
            continue
        except Exception as error:
            outcomes.append(Outcome(time.perf_counter() - start, error=f"{type(error).__name__}: {error}"[:300]))
            continue
        latency = time.perf_counter() - start
        replied = bool(history) and history[-1].get("role") == "assistant" and bool(history[-1].get("content"))
        if "⚠️" in str(status):
            outcomes.append(Outcome(latency, error=str(status)[:300]))
        else:
            outcomes.append(Outcome(latency, ok=replied, dropped=not replied))
    return outcomes


def drive(url: str, clients: int, requests: int, models: list[str], max_new_tokens: int, request_timeout: float,
          deadline: float) -> tuple[list[Outcome], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(chat_client, url, i, requests, models[i % len(models)], max_new_tokens,
                               request_timeout, deadline) for i in range(clients)]
        outcomes = [o for f in futures for o in f.result()]
    return outcomes, time.perf_counter() - started


# --- training ----------------------------------------------------------------------------------------------


def start_training(api, base: str, steps: int) -> str:
    """Start an MLE run through the app's /train endpoint; returns its name."""
    message = api.predict(algorithm="mle", preset="none", base=base, steps=steps, lr=1e-3, batch_size=4,
                          kl_coef=0.0, d_pretrain_steps=0, seed=0, api_name="/train")
    found = re.search(r"Started \*\*(.+?)\*\*", str(message))
    if not found:
        raise RuntimeError(f"the app did not start the training run: {message}")
    return found.group(1)


def wait_training(api, deadline: float, model: str) -> tuple[str, int, int]:
    """(state, step, total) from /training_status once the run has ended, or as it stands at the deadline."""
    state, step, total = "unknown", 0, 0
    while time.time() < deadline:
        progress = api.predict(current_model=model, api_name="/training_status")[0]
        found = PROGRESS.search(str(progress))
        if found:
            state, step, total = found.group(1), int(found.group(2)), int(found.group(3))
            if state in ("finished", "stopped", "failed"):
                break
        time.sleep(0.5)
    return state, step, total


def run_events(work: Path, name: str) -> dict[str, float]:
    """Event name -> time, from the run's events.jsonl (the last of each name)."""
    lines = (work / "runs" / name / "events.jsonl").read_text().splitlines()
    return {record["event"]: record["time"] for record in map(json.loads, lines)}


def check_training(work: Path, name: str, state: str, step: int, total: int, load: tuple[float, float]
                   ) -> TrainingResult:
    """What the run left on disk: each step's metrics once, the end event, a complete model that loads."""
    from core.engine.callbacks import read_metrics
    from core.registry import load_responder

    result = TrainingResult(name=name, state=state, steps=step, total=total)
    run_dir, model_dir = work / "runs" / name, work / "models" / name
    try:
        steps = [r["step"] for r in read_metrics(run_dir)]
        events = run_events(work, name)
        result.seconds = events["end"] - events["start"]
        result.under_load_throughout = load[0] <= events["start"] and events["end"] <= load[1]
        result.metrics_complete = steps == list(range(1, total + 1))
        result.model_complete = bool(load_responder(model_dir).card.metrics.get("complete"))
    except (OSError, ValueError, KeyError, IndexError) as error:
        result.note = f"{type(error).__name__}: {error}"[:300]
    return result


def same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)


def train_alone(api, work: Path, base: str, steps: int, deadline: float, model: str) -> tuple[str, float]:
    """The same run again with no chat load: (its name, its seconds from start to end event)."""
    time.sleep(1.1)  # run names carry the second they start in
    name = start_training(api, base, steps)
    wait_training(api, deadline, model)
    events = run_events(work, name)
    return name, events["end"] - events["start"]


# --- the benchmark -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path) -> Report:
    """The benchmark, with its models (when built), data, app log and the app's work dir under `root`."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if args.checkpoints_dir:
        checkpoints, data = Path(args.checkpoints_dir), paths.data_dir(args.data_dir)
    else:
        print(f"building the tiny models and data in {root} ...", flush=True)
        checkpoints, data = build_world(root)["checkpoints"], write_data_dir(root / "data")
        env[paths.CACHE_ENV] = str(root / "cache")  # the tiny data's trajectories stay out of the shared cache
    cards = list_models(checkpoints)
    models = [args.model] if args.model else [c.name for c in cards]
    # MLE trains fresh adapters on the zero-shot base where one ships (else it continues a model trained in full)
    base = next((c.name for algorithm in ("base", "mle") for c in cards if c.algorithm == algorithm),
                models[0] if models else "")
    if not models:
        raise SystemExit(f"no model (a folder with model_card.json) in {checkpoints}")
    work = root / "work"
    deadline = time.time() + args.timeout
    print(f"starting the app (models: {', '.join(models)}) ...", flush=True)
    app = App(checkpoints, data, work, env, start_timeout=min(args.timeout, 180), max_batch=args.max_batch)
    report = Report(clients=args.clients, requests_per_client=args.requests, max_new_tokens=args.max_new_tokens,
                    concurrency=Settings.concurrency, max_batch=args.max_batch)
    try:
        api = client(app.url)
        for model in models:  # once the app has loaded its models, each answers once: the figures are for serving
            while not chat_client(app.url, 0, 1, model, args.max_new_tokens, args.request_timeout, deadline)[0].ok \
                    and time.time() < deadline:
                time.sleep(1)
        print(f"{args.clients} clients x {args.requests} chat requests ...", flush=True)
        load_started = time.time()
        with ThreadPoolExecutor(1) as background:
            load = background.submit(drive, app.url, args.clients, args.requests, models, args.max_new_tokens,
                                     args.request_timeout, deadline)
            training = None
            if args.with_training:
                time.sleep(min(2.0, args.timeout / 10))  # the run starts while the chat load is already on
                training = start_training(api, base, args.train_steps)
                print(f"training {training} ({args.train_steps} steps from {base}) started", flush=True)
            outcomes, report.wall_s = load.result()
        load_ended = time.time()
        if training:
            state, step, total = wait_training(api, deadline, models[0])
            report.training = check_training(work, training, state, step, total, (load_started, load_ended))
            if args.baseline and report.training.finished:
                alone, report.training.seconds_alone = train_alone(api, work, base, args.train_steps, deadline,
                                                                   models[0])
                report.training.weights_equal_alone = same_weights(work / "models" / training, work / "models" / alone)
        if not app.alive():
            report.error_examples.append(f"the app process died (exit {app.process.returncode}); see {app.log}")
    finally:
        app.stop()
    latencies = [o.latency_s for o in outcomes if o.ok]
    report.requests = len(outcomes)
    report.answered = len(latencies)
    report.errors = sum(bool(o.error) for o in outcomes)
    report.dropped = sum(o.dropped for o in outcomes)
    if latencies:
        report.p50_s, report.p95_s = statistics.median(latencies), percentile(latencies, 0.95)
    report.max_s = max(latencies, default=float("nan"))
    report.throughput_per_s = report.answered / report.wall_s if report.wall_s else 0.0
    report.error_examples += sorted({o.error for o in outcomes if o.error})[:5]
    return report


def describe(report: Report) -> str:
    lines = [f"load: {report.clients} clients x {report.requests_per_client} /respond requests "
             f"(max_new_tokens {report.max_new_tokens}, app concurrency {report.concurrency} per event, "
             f"{f'up to {report.max_batch} replies per batched call' if report.max_batch > 1 else 'unbatched'})",
             f"  requests {report.requests}, answered {report.answered}, errors {report.errors}, "
             f"dropped {report.dropped}",
             f"  latency p50 {report.p50_s:.2f} s, p95 {report.p95_s:.2f} s, max {report.max_s:.2f} s; "
             f"{report.throughput_per_s:.1f} answers/s over {report.wall_s:.1f} s"]
    lines += [f"  error: {e}" for e in report.error_examples]
    t = report.training
    if t is not None:
        lines.append(f"training {t.name}: {t.state}, step {t.steps} of {t.total} in {t.seconds:.1f} s, "
                     f"{'all of it' if t.under_load_throughout else 'not all of it'} under the chat load; "
                     f"metrics complete: {'yes' if t.metrics_complete else 'no'}; exported model complete: "
                     f"{'yes' if t.model_complete else 'no'}" + (f" ({t.note})" if t.note else ""))
        if t.seconds_alone is not None:
            lines.append(f"  the same run without load: {t.seconds_alone:.1f} s; final weights identical: "
                         f"{'yes' if t.weights_equal_alone else 'no'}")
    lines.append("PASS" if report.passed else "FAIL")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.bench_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent chat clients (default 16)")
    parser.add_argument("--requests", type=int, default=8, help="chat requests per client (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="reply length asked for (default 30)")
    parser.add_argument("--model", help="chat with this model only (default: the clients take turns over all)")
    parser.add_argument("--with-training", action="store_true", help="run a short MLE training run meanwhile")
    parser.add_argument("--train-steps", type=int, default=40, help="steps of that run (default 40)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip repeating the run without load (its time and final weights are compared)")
    parser.add_argument("--checkpoints-dir", help="models to serve (default: build tiny ones in a temporary dir)")
    parser.add_argument("--data-dir", help="with --checkpoints-dir: the datasets for the training run")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds before a request counts "
                                                                              "as dropped (default 120)")
    parser.add_argument("--timeout", type=float, default=900.0, help="the whole benchmark's bound in seconds "
                                                                      "(default 900)")
    parser.add_argument("--max-batch", type=int, default=Settings.max_batch, help="the app's --max-batch: chat "
                        f"replies written in one batched call (default {Settings.max_batch}; 1: unbatched)")
    parser.add_argument("--against-unbatched", action="store_true", help="first run the same chat load on the app "
                        "with --max-batch 1 (no training run), and print the ratio")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("clients", "requests", "max_new_tokens", "train_steps", "max_batch"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    reports = []
    if args.against_unbatched:
        reports.append(run(argparse.Namespace(**{**vars(args), "max_batch": 1, "with_training": False}),
                           root / "unbatched"))
        print(describe(reports[-1]))
    report = run(args, root)
    reports.append(report)
    print(describe(report))
    if args.against_unbatched and reports[0].p50_s > 0 and reports[0].throughput_per_s > 0:
        unbatched = reports[0]
        print(f"batched against unbatched: p50 {unbatched.p50_s / report.p50_s:.2f}x faster, p95 "
              f"{unbatched.p95_s / report.p95_s:.2f}x, answers/s "
              f"{report.throughput_per_s / unbatched.throughput_per_s:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str) + "\n")
    if not all(r.passed for r in reports):
        print(f"the app's log and files are kept in {root}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
