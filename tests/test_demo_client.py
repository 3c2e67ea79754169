"""The running app driven through gradio_client, as a remote user or script would: chat, compare, votes,
review, training status, and hostile input that must never take the app down."""

from __future__ import annotations

import pytest
from gradio_client import Client

from demo.app import build_app, launch
from demo.settings import Settings
from demo.app_process import free_port
from demo.tiny_world import build_world

DECODING = dict(temperature=0.9, top_p=0.9, max_new_tokens=12, seed=1, greedy=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    settings = Settings(checkpoints_dir=world["checkpoints"], results_dir=world["results"],
                        work_dir=world["root"] / "work", data_dir=world["root"] / "no-data", host="127.0.0.1",
                        port=free_port(), max_message_chars=500)
    app = build_app(settings)
    _, url, _ = launch(app, settings, prevent_thread_lock=True, quiet=True)
    yield Client(url, verbose=False), settings
    app.close()


def chat(client, message, history=(), model="EmpathyGAIL"):
    return client.predict(message=message, history=list(history), model=model, **DECODING, api_name="/respond")


def test_chat_over_two_turns(served):
    client, _ = served
    box, history, emotion, status = chat(client, "I lost my job today.")
    # The message was taken (only a message that was not sent comes back in the box)
    assert box != "I lost my job today." and [m["role"] for m in history] == ["user", "assistant"]
    assert emotion["label"] and "Emotion in your messages" in status
    _, history, _, _ = chat(client, "It was my dream job.", history, model="MLE")
    assert [m["role"] for m in history] == ["user", "assistant"] * 2


def test_chat_streams(served):
    client, _ = served
    job = client.submit(message="My dog died last week.", history=[], model="MLE", **DECODING,
                        api_name="/respond")
    final = job.result(timeout=60)
    assert len(job.outputs()) >= 2 and final[1][-1]["role"] == "assistant"


ODD = "Ω≈ç√∫˜µ≤≥÷ 田中さん ﷽ \U0001f469\u200d\U0001f469\u200d\U0001f466"  # symbols, CJK, a ligature, a ZWJ family


@pytest.mark.parametrize("message", ["", "   ", "\x00\x1b[31m\x7f", "\u202e\u200b\ufeff", "😢" * 300, "a" * 100_000,
                                     ODD])
def test_hostile_messages_get_an_answer_not_a_crash(served, message):
    client, settings = served
    box, history, _, status = chat(client, message)
    if history:
        assert len(history[0]["content"]) <= settings.max_message_chars and history[-1]["role"] == "assistant"
    else:
        assert "Nothing to send" in status
    if len(message) == 100_000:
        assert "100,000 characters" in status


def test_malformed_history_does_not_take_the_app_down(served):
    client, _ = served
    for history in ([{"role": "user"}], [{"role": "wizard", "content": "x"}], [["tuple", "style"]]):
        try:
            chat(client, "hello", history)
        except Exception as error:  # Gradio may refuse the value itself; the message says why, no traceback
            assert "Traceback" not in str(error)
    assert chat(client, "still there?")[1][-1]["role"] == "assistant"


def test_unknown_model_is_named_in_the_status(served):
    client, _ = served
    box, history, _, status = chat(client, "hello", model="../../etc/passwd")
    assert box == "hello" and history == [] and "unknown model" in status


def test_compare_all_models_and_vote(served):
    client, settings = served
    table, best, status, = client.predict(history_text="Hi there.", prompt="I passed my exam!", **DECODING,
                                          api_name="/compare")
    assert [row[0] for row in table["data"]] == ["EmpathyGAIL", "MLE", "TextGAIL"]
    assert table["headers"] == ["model", "reply", "D score", "emotion", "words"]
    assert all(0 <= row[2] <= 1 for row in table["data"])
    message, rates = client.predict(best="TextGAIL", api_name="/vote")
    assert "Saved" in message and settings.votes_path.is_file()
    assert dict((r[0], r[2]) for r in rates["data"])["TextGAIL"] >= 1


def test_compare_hostile_input(served):
    client, _ = served
    table, _, status = client.predict(history_text="\x00\n" * 100, prompt="", **DECODING, api_name="/compare")
    assert table["data"] == [] or table["data"] == [[""] * 5] or not any(any(r) for r in table["data"])
    assert "type a prompt" in status
    table, _, status = client.predict(history_text="x" * 20_000, prompt="y" * 100_000, **DECODING,
                                      api_name="/compare")
    assert len(table["data"]) == 3 and "characters" in status


def test_review_and_training_status(served):
    client, _ = served
    rows, note = client.predict(emotion="joyful", source="all", bucket="all", search="", api_name="/review")
    assert len(rows["data"]) == 1 and "1 of 3" in note
    path, message = client.predict(emotion="all", source="dailydialog", bucket="all", search="",
                                   api_name="/export_review")
    assert "Exported 1 row." in message and "I got a new puppy." in open(path).read()
    status = client.predict(current_model="EmpathyGAIL", api_name="/training_status")
    assert "No run yet" in status[0]
    message = client.predict(algorithm="mle", preset="none", base="MLE", steps=2, lr=1e-4, batch_size=4,
                             kl_coef=0.0, d_pretrain_steps=0, seed=0, api_name="/train")
    assert "No training data" in message


def test_an_api_call_with_a_wrong_type_hears_what_was_wrong(served):
    client, _ = served
    with pytest.raises(Exception, match="Expected a `float`"):
        client.predict(message="hi", history=[], model="MLE", temperature=0.9, top_p=0.9,
                       max_new_tokens={"tokens": 5}, seed="", greedy=False, api_name="/respond")
