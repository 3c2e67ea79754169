"""The Arena tab's handlers: names hidden until the vote, every vote stored with what was judged, review sessions
that repeat with their seed, and judgements exported and imported without duplicates."""

from dataclasses import replace

from core.scoring import votes
from demo import arena
from demo.models import ModelStore

NAMES = ("EmpathyGAIL", "MLE", "TextGAIL")


def test_two_models_answer_blind_and_the_vote_reveals_and_stores_them(settings):
    store = ModelStore(settings)
    updates = list(arena.ask(store, settings, "Hi there.", "My dog died last week.", max_new_tokens=12))
    context, reply_a, reply_b, status, pending = updates[-1]
    assert context == "Hi there.\n→ My dog died last week." and "names are shown after your vote" in status
    shown = " ".join(str(part) for update in updates for part in update[:4])
    assert not any(name in shown for name in NAMES)  # nothing the page gets names a model before the vote
    assert set(pending["models"]) <= set(NAMES) and pending["replies"] == [reply_a, reply_b]
    assert all(not u[4] for u in updates[:-1])  # no vote can be cast on a reply still being written

    status, ratings, matrix, *_, pending_after, _ = arena.vote(settings, "b", pending, {})
    a, b = pending["models"]
    assert f"**A** was **{a}**, **B** was **{b}**" in status and pending_after == {}
    [stored] = votes.read_votes(settings.arena_path)
    cards = {name: store.card(name) for name in (a, b)}
    assert stored["outcome"] == "b" and stored["prompt"] == "My dog died last week."
    assert stored["history"] == ["Hi there."]
    assert stored["versions"] == [arena.model_version(cards[a].path), arena.model_version(cards[b].path)]
    assert stored["decoding"]["max_new_tokens"] == 12 and stored["time"]
    assert set(ratings["model"]) == {a, b} and list(matrix["model"]) == sorted([a, b])
    assert "Ask two models first" in arena.vote(settings, "a", {}, {})[0]


def test_a_crisis_message_gets_no_vote(settings):
    *_, status, pending = list(arena.ask(ModelStore(settings), settings, "", "I want to kill myself tonight."))[-1]
    assert "crisis" in status and pending == {}


def test_a_review_session_repeats_with_its_seed_and_exports_and_imports_once(settings, tmp_path):
    first = arena.start_session(settings, 3, 3)
    again = arena.start_session(settings, 3, 3)
    assert first[:3] == again[:3] and first[4]["models"] == again[4]["models"]
    session = first[5]
    assert len(session["items"]) == 3 and "Context 1 of 3" in first[3]
    assert all(votes.EXPERT in item["models"] or set(item["models"]) <= set(NAMES) for item in session["items"])
    pending = first[4]
    for outcome in ("a", "tie", "both_bad"):
        status, *_, context, _, _, pending, session = arena.vote(settings, outcome, pending, session)
    assert "Session done: 3 judgements" in status and pending == {}
    path, message = arena.export_session(settings, session)
    assert message == "Exported 3 judgements." and len(votes.read_votes(path)) == 3

    elsewhere = replace(settings, work_dir=tmp_path / "elsewhere")
    assert arena.import_votes(elsewhere, path)[0].startswith("Imported 3 judgements")
    assert arena.import_votes(elsewhere, path)[0].startswith("Imported 0 judgements (3 skipped")
    assert len(votes.read_votes(elsewhere.arena_path)) == 3
    assert "Start a review session first" in arena.export_session(settings, {})[1]
    assert "Choose an exported file" in arena.import_votes(settings, None)[0]
