"""Compare tab: one prompt (and optional history) to every model at once, replies side by side, votes saved."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.registry import stream_together
from core.safety import safe_stream
from demo.chat import TABLE3, WRITING, decoding_from
from demo.inputs import clean_text
from demo.models import ModelStore, NotAvailable
from demo.settings import Settings

COLUMNS = ["model", "reply", "D score", "emotion", "words"]
VOTE_FIELDS = ["time", "history", "prompt", "models", "replies", "winner"]
MAX_HISTORY_LINES = 12
_votes_lock = threading.Lock()


def parse_history(text: Any, max_chars: int) -> tuple[list[str], list[str]]:
    """History typed one utterance per line (oldest first) -> cleaned utterances and notes for the visitor."""
    if not isinstance(text, str):
        return [], []
    lines, notes = [], set()
    for line in text.splitlines():
        cleaned = clean_text(line, max_chars)
        notes.update(cleaned.notes)
        if cleaned.text:
            lines.append(cleaned.text)
    if len(lines) > MAX_HISTORY_LINES:
        notes.add(f"only the last {MAX_HISTORY_LINES} history lines are used")
        lines = lines[-MAX_HISTORY_LINES:]
    return lines, sorted(notes)


def compare(store: ModelStore, settings: Settings, history_text: Any, prompt: Any, temperature: Any = 0.9,
            top_p: Any = 0.9, max_new_tokens: Any = 50, seed: Any = None, greedy: Any = False
            ) -> Iterator[tuple[pd.DataFrame, dict, str, dict]]:
    """Every model's reply to the same context, streamed into one table: yields (table, choices for the vote,
    status, the comparison record); the models on one shared base answer in one batched call."""
    empty, no_choice = pd.DataFrame(columns=COLUMNS), gr.update(choices=[], value=None)
    history, notes = parse_history(history_text, settings.max_message_chars)
    cleaned = clean_text(prompt, settings.max_message_chars)
    notes = sorted(set(notes) | set(cleaned.notes))
    if not cleaned.text:
        yield empty, no_choice, "Nothing to compare: type a prompt first.", {}
        return
    if not store.labels():
        yield empty, no_choice, store.missing(), {}
        return
    responders, failures = {}, []
    for label in store.labels():
        try:
            responders[label] = store.responder(label)
        except NotAvailable as error:  # one broken model must not hide the others' replies
            failures.append(f"{label}: {str(error)[:200]}")
    if not responders:
        yield empty, no_choice, "⚠️ No model could reply. " + "; ".join(failures), {}
        return
    decoding = decoding_from(temperature, top_p, max_new_tokens, seed, greedy)
    labels = list(responders)
    replies = []
    try:
        for replies in safe_stream(history, cleaned.text, len(labels), lambda: stream_together(
                list(responders.values()), (history, cleaned.text), decoding)):
            growing = pd.DataFrame({"model": labels, "reply": [r.text or WRITING for r in replies]})
            yield growing.reindex(columns=COLUMNS), gr.skip(), "Writing the replies…", {}
    except Exception as error:
        yield empty, no_choice, f"⚠️ The models failed to reply ({type(error).__name__}: {str(error)[:200]}).", {}
        return

    texts = [r.text for r in replies]
    table = pd.DataFrame({"model": labels, "reply": texts})
    table["D score"] = _judge_column(store, history, cleaned.text, texts, notes)
    table["emotion"] = _emotion_column(store, texts, notes)
    table["words"] = [len(t.split()) for t in texts]
    guarded = [f"{label} ({r.reason})" for label, r in zip(labels, replies) if r.kind == "guarded"]
    if any(r.kind == "crisis" for r in replies):
        notes.append("the prompt may be about a crisis, so every model gives the fixed support message")
    if guarded:
        notes.append("replaced by a safe reply: " + ", ".join(guarded))
    if failures:
        notes.append("could not reply: " + "; ".join(failures))
    status = " ".join(n[0].upper() + n[1:] + "." for n in notes)
    record = {"history": history, "prompt": cleaned.text, "replies": dict(zip(labels, texts))}
    yield table[COLUMNS], gr.update(choices=labels, value=None), status, record


def _judge_column(store: ModelStore, history: list[str], prompt: str, replies: list[str], notes: list[str]) -> list:
    try:
        judge, scores = store.judge_scores([(history, prompt)] * len(replies), replies)
    except NotAvailable as error:
        notes.append(f"D score: {error}")
        return [None] * len(replies)
    except Exception as error:
        notes.append(f"D score failed: {type(error).__name__}: {str(error)[:200]}")
        return [None] * len(replies)
    notes.append(f"D score: how expert-like the discriminator of {judge!r} finds each reply (higher: more so)")
    return [round(s, 3) for s in scores]


def _emotion_column(store: ModelStore, replies: list[str], notes: list[str]) -> list[str]:
    try:
        readings = store.read_emotions(replies)
    except NotAvailable as error:
        notes.append(f"emotion: {error}")
        return [""] * len(replies)
    return [f"{max(r, key=r.get)} ({max(r.values()):.0%})" for r in readings]


def vote(settings: Settings, best: Any, record: Any) -> tuple[str, pd.DataFrame]:
    """Save the visitor's pick to the votes CSV; returns (status, win-rate table)."""
    if not isinstance(record, dict) or not record.get("replies"):
        return "Compare first, then pick the best reply.", win_rates(settings.votes_path)
    if best not in record["replies"]:
        return "Pick one of the models that replied.", win_rates(settings.votes_path)
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "history": json.dumps(record["history"]),
           "prompt": record["prompt"], "models": json.dumps(list(record["replies"])),
           "replies": json.dumps(record["replies"]), "winner": best}
    path = settings.votes_path
    try:
        with _votes_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.is_file() or path.stat().st_size == 0
            with path.open("a", newline="") as file:
                writer = csv.DictWriter(file, VOTE_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
    except OSError as error:
        return f"⚠️ The vote could not be saved to {path}: {error.strerror or error}", win_rates(path)
    return f"Saved: **{best}** wins this one.", win_rates(path)


def win_rates(path: Path) -> pd.DataFrame:
    """Per model: comparisons it was in, how often it was picked, and the share."""
    columns = ["model", "comparisons", "wins", "win rate"]
    try:
        votes = pd.read_csv(path, keep_default_na=False) if Path(path).is_file() else pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame(columns=columns)
    counts: dict[str, list[int]] = {}
    for models, winner in zip(votes.get("models", []), votes.get("winner", [])):
        try:
            names = json.loads(models)
        except (TypeError, ValueError):
            continue
        for name in names if isinstance(names, list) else []:
            counts.setdefault(str(name), [0, 0])
            counts[str(name)][0] += 1
            counts[str(name)][1] += int(name == winner)
    rows = [(m, n, w, round(w / n, 3)) for m, (n, w) in counts.items()]
    return pd.DataFrame(sorted(rows, key=lambda r: (-r[3], -r[1])), columns=columns)


def on_load(store: ModelStore, settings: Settings) -> tuple[str, pd.DataFrame]:
    """What the tab shows when a page opens: what is missing, and the win rates of every vote so far."""
    return store.missing(), win_rates(settings.votes_path)


def build(store: ModelStore, settings: Settings) -> tuple[gr.Markdown, gr.Dataframe]:
    """Lay out the tab; returns the parts a page load refreshes (see `on_load`)."""
    gr.Markdown("One prompt, optionally with the conversation before it, goes to every model; pick the best reply. "
                "The names are shown here; for a blind vote, use the Arena tab.")
    missing = gr.Markdown(store.missing())
    with gr.Row():
        history = gr.Textbox(label="History (optional)", info="One utterance per line, oldest first; the last "
                             "line is the bot's.", lines=3, scale=2, elem_id="compare-history")
        prompt = gr.Textbox(label="Prompt", lines=3, scale=2, elem_id="compare-prompt")
    with gr.Accordion("Decoding settings", open=False):
        with gr.Row():
            temperature = gr.Slider(0.05, 2.0, value=0.9, step=0.05, label="Temperature")
            top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
            max_new = gr.Slider(1, 100, value=50, step=1, label="Max new tokens")
            seed = gr.Textbox("", label="Seed (empty: random)", max_lines=1, elem_id="compare-seed")
            greedy = gr.Checkbox(False, label="Greedy")
    go = gr.Button("Compare all models", variant="primary", elem_id="compare-go")
    gr.Examples([[h, p] for h, p in TABLE3], inputs=[history, prompt], label="The method's Table 3")
    status = gr.Markdown(elem_id="compare-status")
    table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Replies", wrap=True, interactive=False,
                         column_widths=["14%", "52%", "10%", "16%", "8%"], elem_id="compare-table")
    record = gr.State({})
    with gr.Row():
        best = gr.Radio([], label="Which reply is best?", scale=3, elem_id="compare-best")
        save = gr.Button("Save vote", scale=1)
    vote_status = gr.Markdown()
    rates = gr.Dataframe(win_rates(settings.votes_path), label="Win rates (all saved votes)", interactive=False)

    go.click(partial(compare, store, settings), [history, prompt, temperature, top_p, max_new, seed, greedy],
             [table, best, status, record], api_name="compare", concurrency_limit=settings.concurrency)
    save.click(partial(vote, settings), [best, record], [vote_status, rates], api_name="vote")
    return missing, rates
