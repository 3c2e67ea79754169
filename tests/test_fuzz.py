"""Hostile input, bounded: seeded generated messages, histories and decoding values (scripts/fuzz.py makes them) to
the chat, compare and undo handlers directly and through the running app's API. Every one is answered, and the app
still serves a normal request afterwards. `python scripts/fuzz.py` is the long run."""

from __future__ import annotations

import random
import unicodedata

import pytest
import torch

from demo import chat
from demo.app import build_app, launch
from demo.models import ModelStore
from demo.settings import Settings
from scripts.fuzz import _nested, fuzz_api, fuzz_handlers, hostile_text, normal_request
from demo.app_process import free_port
from demo.tiny_world import build_world

HANDLER_CASES = 1000
API_CASES = 120


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("fuzz"))
    return Settings(checkpoints_dir=world["checkpoints"], results_dir=world["results"], work_dir=world["root"] / "work",
                    data_dir=world["root"] / "no-data", host="127.0.0.1", port=free_port())


@pytest.fixture
def one_thread():
    """Thousands of tiny generations: one torch thread is as fast, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_generated_texts_cover_the_hostile_kinds():
    texts = [hostile_text(random.Random(seed)) for seed in range(600)]
    found = {
        "empty": any(t == "" for t in texts), "100k": any(len(t) >= 100_000 for t in texts),
        "astral": any(any(ord(c) > 0xFFFF for c in t) for t in texts),
        "control": any(any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in t) for t in texts),
        "rtl": any("\u202e" in t or "\u200f" in t for t in texts), "zero-width": any("\u200b" in t for t in texts),
        "combining": any(any(unicodedata.combining(c) for c in t) for t in texts),
        "model tokens": any("<|bot|>" in t for t in texts),
    }
    assert all(found.values()), found
    assert not any(0xD800 <= ord(c) < 0xE000 for t in texts for c in t)  # JSON cannot carry lone surrogates


@pytest.mark.slow
def test_handlers_answer_every_hostile_input(settings, one_thread):
    store = ModelStore(settings)
    result = fuzz_handlers(store, settings, HANDLER_CASES, seed=8)
    assert result.cases == result.answered == HANDLER_CASES, result.describe("handlers")
    assert min(result.by_endpoint.values()) > HANDLER_CASES // 10  # chat, compare and undo all had their share

    *_, (_, history, _, status) = chat.respond(store, settings, "I passed my exam!", [], "MLE", max_new_tokens=8,
                                                 seed=1)
    assert history[-1]["role"] == "assistant" and history[-1]["content"] and "⚠️" not in status


@pytest.mark.slow
def test_the_running_app_answers_hostile_requests_and_still_serves(settings, one_thread):
    app = build_app(settings)
    _, url, _ = launch(app, settings, prevent_thread_lock=True, quiet=True)
    try:
        result = fuzz_api(url, app.store.labels(), API_CASES, seed=8)
        assert result.cases == API_CASES and not result.failures, result.describe("API")
        assert result.answered > API_CASES // 2  # most requests reached the app ...
        assert result.refused > 0  # ... and Gradio turned the malformed histories away, with the server still up
        assert normal_request(url, "MLE")
    finally:
        app.close()


def test_content_nested_thousands_deep_is_answered(settings):
    history = [{"role": "user", "content": _nested(5000)}]
    *_, (_, _, _, status) = chat.respond(ModelStore(settings), settings, "hello", history, "MLE", max_new_tokens=2)
    assert "⚠️" not in status
