"""Every model call of a process runs on one long-lived thread, whichever thread asks."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.models.generator import Decoding
from core.models.model_thread import MODEL_THREAD, on_model_thread, start_on_model_thread
from core.registry import load_responder
from engine_fixtures import adapters_on_tiny_base


@on_model_thread
def thread_id() -> int:
    return threading.get_ident()


def test_calls_from_any_thread_run_on_the_one_model_thread():
    with ThreadPoolExecutor(3) as callers:
        seen = set(callers.map(lambda _: thread_id(), range(6)))
    assert len(seen | {thread_id()}) == 1
    assert threading.get_ident() not in seen


def test_a_call_made_on_the_model_thread_runs_at_once():
    @on_model_thread
    def outer() -> tuple[int, int]:
        return threading.get_ident(), thread_id()  # would wait for itself if it were queued

    inner, nested = MODEL_THREAD.submit(outer).result(timeout=5)
    assert inner == nested == thread_id()


def test_an_error_reaches_the_caller_and_the_thread_goes_on():
    @on_model_thread
    def failing():
        raise ValueError("no such adapter, say")

    with pytest.raises(ValueError, match="no such adapter"):
        failing()
    assert thread_id() == thread_id()


def test_a_stream_started_on_the_model_thread_is_refused():
    with pytest.raises(RuntimeError, match="wait for itself"):
        MODEL_THREAD.submit(start_on_model_thread, lambda: None).result(timeout=5)


def test_replies_and_scores_are_computed_on_the_model_thread(tmp_path, monkeypatch):
    import core.registry

    responder = load_responder(adapters_on_tiny_base(tmp_path)[0])
    where = []
    for name in ("generate", "response_logprobs"):
        original = getattr(core.registry, name)

        def recorded(*args, _original=original, **kwargs):
            where.append(threading.get_ident())
            return _original(*args, **kwargs)
        monkeypatch.setattr(core.registry, name, recorded)
    decoding = Decoding(max_new_tokens=4, seed=0)
    reply = responder.respond([], "I lost my keys.", decoding)
    responder.score_batch([([], "I lost my keys.")], [reply])
    list(responder.stream([], "I lost my keys.", decoding))
    assert len(where) == 3 and set(where) == {thread_id()}
