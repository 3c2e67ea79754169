"""Arena tab: blind pairwise votes, the way human-preference leaderboards collect them.

Two replies to one context are shown as A and B, in random order and without the models' names, which are revealed
only after the vote; ties and "both bad" are allowed. The context is the visitor's own (two models picked at random
answer it live) or comes from a review session: a seeded sample of test contexts with the replies the evaluation
saved, the person's own reply in the data among them. Every vote is stored with its context, both replies, the
decoding settings, both models' versions and the time (core.scoring.votes); the tab shows Bradley-Terry ratings
with 95% intervals and the pairwise win matrix. A session's judgements can be exported, and imported elsewhere
without duplicates.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.models.card import model_version
from core.registry import stream_together
from core.safety import safe_stream
from core.scoring import votes
from core.scoring.evaluate import read_generations
from demo.chat import WRITING, decoding_from
from demo.compare import parse_history
from demo.inputs import clamp, clean_text
from demo.models import ModelStore, NotAvailable
from demo.settings import Settings

OUTCOMES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
BOOTSTRAP = 200  # resamples behind the intervals shown in the tab; `python -m core votes report` uses 1000
MAX_SESSION = 200
ASK = "Which reply is better? The models' names are shown after your vote."


def context_text(history: list[str], prompt: str) -> str:
    return "\n".join([*history, f"→ {prompt}"])


def ask(store: ModelStore, settings: Settings, history_text: Any, prompt: Any, temperature: Any = 0.9,
        top_p: Any = 0.9, max_new_tokens: Any = 50) -> Iterator[tuple[str, str, str, str, dict]]:
    """Two models picked at random answer the visitor's context, streamed as A and B: yields (context, reply A,
    reply B, status, the pending vote); the names stay in the pending vote, on the server, until the vote."""
    history, _ = parse_history(history_text, settings.max_message_chars)
    cleaned = clean_text(prompt, settings.max_message_chars)
    if not cleaned.text:
        yield "", "", "", "Type a prompt first.", {}
        return
    labels = store.labels()
    if len(labels) < 2:
        yield "", "", "", store.missing() or "The arena needs at least two models.", {}
        return
    pair = random.SystemRandom().sample(labels, 2)  # which two, and which is A, both at random
    try:
        responders = [store.responder(label) for label in pair]
    except NotAvailable as error:
        yield "", "", "", f"⚠️ {error}", {}
        return
    shown = context_text(history, cleaned.text)
    decoding = decoding_from(temperature, top_p, max_new_tokens, None, False)
    replies = []
    try:
        for replies in safe_stream(history, cleaned.text, 2, lambda: stream_together(
                responders, (history, cleaned.text), decoding)):
            yield shown, replies[0].text or WRITING, replies[1].text or WRITING, "Writing both replies…", {}
    except Exception as error:
        yield shown, "", "", f"⚠️ The models failed to reply ({type(error).__name__}: {str(error)[:200]}).", {}
        return
    if replies[0].kind == "crisis":
        yield shown, replies[0].text, replies[1].text, ("This message may be about a crisis, so both replies are the "
                                                        "fixed support message: there is nothing to vote on."), {}
        return
    cards = [store.card(label) for label in pair]
    pending = {"history": history, "prompt": cleaned.text, "models": [c.name for c in cards],
               "versions": [model_version(c.path) for c in cards], "replies": [r.text for r in replies],
               "decoding": asdict(decoding), "session": ""}
    yield shown, pending["replies"][0], pending["replies"][1], ASK, pending


def session_items(results_dir: Path, seed: int, size: int) -> list[dict]:
    """A review session: `size` test contexts drawn with `seed` from the saved generations, each with two of the
    saved replies (the models' first samples and the person's own) drawn with the same seed."""
    try:
        records, meta = read_generations(results_dir)
    except (OSError, ValueError, KeyError) as error:
        raise NotAvailable(f"no saved test generations to review ({error}); run `python -m core evaluate`") from error
    versions = {m["name"]: model_version(m["path"]) if Path(m["path"], "model_card.json").is_file() else "saved"
                for m in meta.get("models", [])}
    versions[votes.EXPERT] = "data"
    rng = random.Random(seed)
    session = uuid.uuid4().hex[:12]
    items = []
    for record in rng.sample(records, min(size, len(records))):
        candidates = {name: replies[0] for name, replies in record["replies"].items() if replies and replies[0]}
        candidates[votes.EXPERT] = record["expert"]
        pair = rng.sample(sorted(candidates), 2)
        items.append({"history": record["history"], "prompt": record["prompt"], "models": pair,
                      "versions": [versions.get(name, "saved") for name in pair],
                      "replies": [candidates[name] for name in pair], "decoding": meta.get("decoding", {}),
                      "session": session})
    return items


def showing(session: dict) -> tuple[str, str, str, str, dict]:
    """(context, reply A, reply B, status, pending vote) for the session's current item."""
    items, position = session["items"], session["position"]
    if position >= len(items):
        return "", "", "", f"Session done: {len(items)} judgements. Export them below, or start another.", {}
    item = items[position]
    return (context_text(item["history"], item["prompt"]), *item["replies"],
            f"Context {position + 1} of {len(items)}. {ASK}", item)


def start_session(settings: Settings, seed: Any, size: Any) -> tuple[str, str, str, str, dict, dict]:
    try:
        items = session_items(settings.results_dir, int(clamp(seed, 0, 0, 2**31 - 1)),
                              int(clamp(size, 20, 1, MAX_SESSION)))
    except NotAvailable as error:
        return "", "", "", f"⚠️ {error}", {}, {}
    session = {"id": items[0]["session"] if items else "", "items": items, "position": 0}
    return (*showing(session), session)


def tables(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    recorded = votes.read_votes(settings.arena_path)
    return votes.ratings(recorded, bootstrap=BOOTSTRAP), votes.win_matrix(recorded).reset_index(names="model")


def vote(settings: Settings, outcome: str, pending: Any, session: Any):
    """Store the vote and reveal the names; in a review session, go on to the next context. Returns (status,
    ratings, win matrix, context, reply A, reply B, pending vote, session)."""
    keep = (gr.skip(),) * 3
    if not isinstance(pending, dict) or not pending:
        return ("Ask two models first, or start a review session.", *tables(settings), *keep, {}, session)
    try:
        votes.append_votes(settings.arena_path, [votes.new_vote(outcome=outcome, **pending)])
    except (OSError, ValueError) as error:
        return (f"⚠️ The vote could not be saved: {error}", *tables(settings), *keep, pending, session)
    a, b = pending["models"]
    reveal = f"Saved ({OUTCOMES[outcome]}). **A** was **{a}**, **B** was **{b}**."
    if isinstance(session, dict) and session.get("id") == pending["session"] and pending["session"]:
        session = {**session, "position": session["position"] + 1}
        context, reply_a, reply_b, status, pending = showing(session)
        return (f"{reveal} {status}", *tables(settings), context, reply_a, reply_b, pending, session)
    return (reveal, *tables(settings), *keep, {}, session)


def export_session(settings: Settings, session: Any) -> tuple[str | None, str]:
    """This session's judgements as a JSON-lines file to download."""
    if not isinstance(session, dict) or not session.get("id"):
        return None, "Start a review session first."
    mine = [v for v in votes.read_votes(settings.arena_path) if v["session"] == session["id"]]
    if not mine:
        return None, "No judgements in this session yet."
    path = settings.work_dir / "exports" / f"arena-{session['id']}.jsonl"
    path.unlink(missing_ok=True)
    votes.append_votes(path, mine)
    return str(path), f"Exported {len(mine)} judgements."


def import_votes(settings: Settings, file: Any) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Merge an exported file into the arena's votes; a vote already there is not added twice."""
    if not file:
        return "Choose an exported file (arena-….jsonl) first.", *tables(settings)
    try:
        added, skipped = votes.merge_file(settings.arena_path, file)
    except (OSError, UnicodeDecodeError) as error:
        return f"⚠️ The file could not be read: {error}", *tables(settings)
    return f"Imported {added} judgements ({skipped} skipped: already here, or not votes).", *tables(settings)


def build(store: ModelStore, settings: Settings) -> tuple[gr.Dataframe, gr.Dataframe]:
    """Lay out the tab; returns the ratings and the win matrix, which a page load refreshes (see `tables`)."""
    gr.Markdown("A blind vote: two replies to the same context, in random order, the models' names shown only after "
                "you vote. Ask two models about your own message, or work through a review session of test "
                "contexts (the person's own reply in the data is among the candidates there).")
    pending, session = gr.State({}), gr.State({})
    with gr.Tabs():
        with gr.Tab("Your message"):
            with gr.Row():
                history = gr.Textbox(label="History (optional)", info="One utterance per line, oldest first.",
                                     lines=2, scale=2)
                prompt = gr.Textbox(label="Message", lines=2, scale=2, elem_id="arena-prompt")
            go = gr.Button("Ask two models (blind)", variant="primary", elem_id="arena-go")
        with gr.Tab("Review session"):
            with gr.Row():
                seed = gr.Number(0, precision=0, label="Session seed (the same seed gives the same contexts)")
                size = gr.Slider(1, MAX_SESSION, value=20, step=1, label="Contexts")
                start = gr.Button("Start session", elem_id="arena-start")
            with gr.Row():
                export = gr.Button("Export this session's judgements")
                exported = gr.File(label="Exported judgements", interactive=False)
                upload = gr.File(label="Import judgements (arena-….jsonl)", file_types=[".jsonl"])
    context = gr.Textbox(label="Context", lines=3, interactive=False, elem_id="arena-context")
    with gr.Row():
        reply_a = gr.Textbox(label="Reply A", lines=3, interactive=False, elem_id="arena-a")
        reply_b = gr.Textbox(label="Reply B", lines=3, interactive=False, elem_id="arena-b")
    with gr.Row():
        buttons = {outcome: gr.Button(text, elem_id=f"arena-vote-{outcome}") for outcome, text in OUTCOMES.items()}
    status = gr.Markdown(elem_id="arena-status")
    ratings = gr.Dataframe(votes.ratings([]), label="Ratings (Bradley-Terry, Elo scale, 95% interval)",
                           interactive=False)
    matrix = gr.Dataframe(pd.DataFrame(), label="Win matrix: the row model's share of points against the column "
                                                "model (a tie or both bad is half)", interactive=False)

    shown = [context, reply_a, reply_b, status, pending]
    go.click(partial(ask, store, settings), [history, prompt], shown, api_name="arena_ask",
             concurrency_limit=settings.concurrency)
    start.click(partial(start_session, settings), [seed, size], [*shown, session], api_name="arena_session")
    for outcome, button in buttons.items():
        button.click(partial(vote, settings, outcome), [pending, session],
                     [status, ratings, matrix, context, reply_a, reply_b, pending, session],
                     api_name=f"arena_vote_{outcome}")
    export.click(partial(export_session, settings), [session], [exported, status], api_visibility="private")
    upload.upload(partial(import_votes, settings), [upload], [status, ratings, matrix], api_visibility="private")
    return ratings, matrix
