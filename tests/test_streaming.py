"""Replies shown as they are written: streams that end where the unstreamed reply does, streams that stop when the
reader does, several adapters on one base answering in one batched call, and the guard on a growing reply."""

import io
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from core.cli.chat import show_streamed
from core.models.generator import (BASE_ROW, Decoding, adapter_per_row, using_adapter)
from core.models.model_thread import MODEL_THREAD
from core.models.streaming import stream_generation
from core.models.card import ModelCard
from core.registry import MODEL_LOCK, CausalLMResponder, load_responder, stream_together
from core.safe_files import write_checksums
from core.safety import CRISIS_REPLY, safe_stream
from core.safety.guard import HOLD_BACK_WORDS, IDENTITY_FALLBACK
from core.serving import ReplyBatcher
from core.text import TOKENIZER_FILES
from engine_fixtures import EXCHANGES, adapters_on_tiny_base, tiny_generator, toy_tokenizer

CONTEXTS = [([], p) for p, _ in EXCHANGES[:3]] + [(["Hi there.", "Hello, how are you?"], EXCHANGES[4][0])]


@pytest.fixture(scope="module")
def responders(tmp_path_factory):
    """Two adapters and the zero-shot base on one tiny Llama, and a GPT-2 of its own."""
    paths = adapters_on_tiny_base(tmp_path_factory.mktemp("models"))
    gpt2_tokenizer = toy_tokenizer()
    own = CausalLMResponder(tiny_generator(gpt2_tokenizer), gpt2_tokenizer, ModelCard(name="own", algorithm="mle"))
    return [load_responder(path) for path in paths] + [own]


def test_a_stream_grows_and_ends_with_the_unstreamed_reply(responders):
    sampled = Decoding(max_new_tokens=12, seed=7)
    for responder in responders:
        for history, prompt in CONTEXTS[:2]:
            texts = list(responder.stream(history, prompt, sampled))
            assert texts[-1] == responder.respond(history, prompt, sampled)
            assert texts[-2] == texts[-1]  # the stream's own text already was the whole reply
            assert len(texts) >= 3 and all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))


def test_closing_a_stream_stops_its_generation():
    steps = []

    def endless(streamer):
        for _ in range(2000):
            streamer.put(torch.tensor([len(steps)]))
            steps.append(1)
            time.sleep(0.002)
        return ["done"]

    stream = stream_generation(endless, toy_tokenizer(), rows=1)
    next(stream), next(stream)
    stream.close()  # returns once the worker has stopped
    stopped_at = len(steps)
    time.sleep(0.05)
    assert stopped_at < 100 and len(steps) == stopped_at
    MODEL_THREAD.submit(lambda: None).result(timeout=1)  # the model thread is free again


def test_an_error_while_generating_reaches_the_reader():
    def failing(streamer):
        raise ValueError("out of memory, say")

    with pytest.raises(ValueError, match="out of memory"):
        list(stream_generation(failing, toy_tokenizer(), rows=1))
    assert MODEL_LOCK.acquire(timeout=1)
    MODEL_LOCK.release()


def test_models_on_one_base_answer_in_one_call_as_each_does_alone(responders, monkeypatch):
    import core.registry

    calls = []
    real = core.registry.generate
    monkeypatch.setattr(core.registry, "generate", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    greedy = Decoding(do_sample=False, max_new_tokens=10)
    for context in CONTEXTS:
        calls.clear()
        together = list(stream_together(responders, context, greedy))
        assert sorted(calls) == [1, 3]  # the GPT-2 of its own, then three rows on the shared base
        assert together[-1] == [responder.respond(*context, greedy) for responder in responders]
    assert len(set(together[-1])) == 4


def test_each_row_goes_through_its_own_adapter_and_the_layers_are_restored(responders):
    shared = responders[0].shared
    names = [responders[1].adapter, BASE_ROW, responders[0].adapter, responders[1].adapter]  # one used twice
    ids = shared.tokenizer(EXCHANGES[0][0], return_tensors="pt").input_ids
    with torch.no_grad():
        alone = []
        for name in names:
            with using_adapter(shared.peft, None if name == BASE_ROW else name):
                alone.append(shared.peft(input_ids=ids).logits[0])
        with adapter_per_row(shared.peft, names):
            together = shared.peft(input_ids=ids.repeat(len(names), 1)).logits
    for row in range(len(names)):
        torch.testing.assert_close(together[row], alone[row], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(alone[0], alone[2], atol=1e-2)  # the adapters really differ
    assert not any("forward" in vars(module) for module in shared.peft.modules())  # peft's own forward again


def _growing(reply: str, consumed: list[str]):
    """A stream that writes `reply` a few characters at a time, recording how far it was read."""
    for end in range(3, len(reply) + 3, 3):
        consumed.append(reply[:end])
        yield [reply[:end]]


def test_a_reply_the_guard_replaces_is_never_shown_in_part():
    consumed: list[str] = []
    reply = "That is hard. I hear you. Honestly, I am a real person and I know how that feels, truly."
    shown = [replies[0] for replies in safe_stream([], "I feel alone.", 1, lambda: _growing(reply, consumed))]
    assert shown[-1].kind == "guarded" and shown[-1].text == IDENTITY_FALLBACK
    partial = [s.text for s in shown if s.kind == "generated"]
    assert partial and not [text for text in partial if any(w in text for w in ("real", "person", "Honestly"))]
    assert len(consumed[-1]) < len(reply)  # the generation stopped once the guard fired
    short = [replies[0].text for replies in safe_stream([], "Who are you?", 1,
                                                          lambda: _growing("I am a real person.", []))]
    assert set(short) <= {"", IDENTITY_FALLBACK}  # too short to show any of it before the guard judged it whole


def test_a_safe_reply_streams_behind_what_is_written_and_ends_whole():
    reply = "That sounds really hard. I am so sorry that happened to you, it must have been a shock."
    shown = [replies[0].text for replies in safe_stream([], "My car was stolen.", 1,
                                                          lambda: _growing(reply, []))]
    assert shown[-1] == reply and all(reply.startswith(text) for text in shown)
    assert len({text for text in shown}) > 5
    assert all(len(reply[len(text):].split()) >= HOLD_BACK_WORDS for text in shown[:-1])


def test_rows_are_guarded_apart_and_a_crisis_message_never_reaches_the_models():
    def two_rows():
        for n in range(1, 30):
            yield ["Sorry to hear that. You should just kill yourself now, it would be over"[:n * 3],
                   "That sounds like a lot to carry. I am here and listening to you."[:n * 3]]

    final = list(safe_stream([], "I failed my exam.", 2, two_rows))[-1]
    assert [r.kind for r in final] == ["guarded", "generated"]
    assert final[1].text == "That sounds like a lot to carry. I am here and listening to you."

    def never():
        raise AssertionError("a crisis message must not reach the model")

    [replies] = list(safe_stream([], "I am going to kill myself tonight.", 3, never))
    assert [r.text for r in replies] == [CRISIS_REPLY] * 3


def test_the_terminal_chat_prints_the_reply_as_it_grows():
    class Writer:
        def stream_batch(self, contexts, decoding):
            return _growing("Oh no, that is such a shame. Did you get to talk to anyone about it afterwards?", [])

    out = io.StringIO()
    kept = show_streamed(Writer(), [], "I missed the train.", Decoding(), out)
    assert kept == "Oh no, that is such a shame. Did you get to talk to anyone about it afterwards?"
    assert out.getvalue() == f"bot> {kept}\n"


def _in_threads(batcher, requests):
    """Each (responder, context, decoding) streamed in its own thread; their whole replies, in order."""
    replies = [None] * len(requests)

    def ask(i, responder, context, decoding):
        try:
            replies[i] = list(batcher.stream(responder, *context, decoding))[-1]
        except Exception as error:
            replies[i] = error

    threads = [threading.Thread(target=ask, args=(i, *r)) for i, r in enumerate(requests)]
    return threads, replies


def test_requests_that_wait_together_are_answered_in_one_batch_as_each_alone(responders):
    batcher = ReplyBatcher(max_batch=8)
    greedy = Decoding(do_sample=False, max_new_tokens=10)
    shared = responders[:3]
    requests = [(shared[i % 3], CONTEXTS[i % len(CONTEXTS)], greedy) for i in range(6)]
    threads, replies = _in_threads(batcher, requests)
    with MODEL_LOCK:  # the first request's call waits for the lock, so the other five queue behind it
        for thread in threads:
            thread.start()
            time.sleep(0.01)
        deadline = time.time() + 10
        while len(batcher._pending) < 5 and time.time() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=60)
    assert batcher.batch_sizes == [1, 5]
    assert replies == [responder.respond(*context, greedy) for responder, context, _ in requests]


def test_seeded_requests_and_models_of_their_own_are_answered_alone(responders):
    batcher = ReplyBatcher(max_batch=8)
    seeded = Decoding(max_new_tokens=10, seed=3)
    assert list(batcher.stream(responders[0], *CONTEXTS[0], seeded))[-1] == responders[0].respond(*CONTEXTS[0], seeded)
    greedy = Decoding(do_sample=False, max_new_tokens=10)
    assert list(batcher.stream(responders[3], *CONTEXTS[1], greedy))[-1] == responders[3].respond(*CONTEXTS[1], greedy)
    assert batcher.batch_sizes == []


def test_a_failed_batch_reaches_every_request_in_it(responders, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(responders[0].shared, "generate_mixed", broken)
    batcher = ReplyBatcher(max_batch=8)
    threads, replies = _in_threads(batcher, [(responders[i], CONTEXTS[0], Decoding(max_new_tokens=5))
                                             for i in range(3)])
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(r, RuntimeError) and "broke" in str(r) for r in replies)
    with pytest.raises(ValueError, match="max_batch"):
        ReplyBatcher(max_batch=0)


def test_a_request_whose_reply_has_ended_is_answered_before_its_batch_ends(responders, monkeypatch):
    from core.models.streaming import Texts
    from core.serving import _DONE, _Request

    release = threading.Event()

    def two_rows(adapters, contexts, decoding):
        yield Texts(["Oh no.", "That"], [True, False])
        release.wait(10)
        yield Texts(["Oh no.", "That is hard."], [True, True])
        yield ["Oh no.", "That is hard."]

    monkeypatch.setattr(responders[0].shared, "stream_mixed", two_rows)
    short, long = (_Request(responders[i], CONTEXTS[i], Decoding()) for i in range(2))
    writer = threading.Thread(target=ReplyBatcher()._write, args=([short, long],))
    writer.start()
    assert [short.steps.get(timeout=5), short.steps.get(timeout=5)] == ["Oh no.", _DONE]  # the batch still runs
    assert long.steps.get(timeout=5) == "That" and long.steps.empty()
    release.set()
    writer.join(10)
    assert [long.steps.get_nowait() for _ in range(2)] == ["That is hard.", _DONE]
    assert short.steps.empty() and long.steps.empty()


def test_an_adapter_reads_its_bases_loaded_tokenizer_unless_it_saved_another(responders, tmp_path):
    one = responders[0]
    assert not Path(one.card.path, "tokenizer.json").exists()  # export_model left out the base's tokenizer
    assert one.tokenizer is one.shared.tokenizer
    same, other = (shutil.copytree(one.card.path, tmp_path / name) for name in ("same", "other"))
    for name in TOKENIZER_FILES:  # as adapters were saved before: the base's files, loading flags aside
        if (one.shared.folder / name).is_file():
            for folder in (same, other):
                shutil.copy(one.shared.folder / name, folder / name)
    config = same / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "local_files_only": False}))
    config = other / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_max_length": 77}))
    for folder in (same, other):
        write_checksums(folder)
    assert load_responder(same).tokenizer is one.shared.tokenizer
    assert load_responder(other).tokenizer.model_max_length == 77
