"""The app's handlers called directly, on tiny real models: chat, compare, votes, review, results, training."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from demo import chat, compare, jobs, results, review, train
from demo.inputs import clean_text, message_text
from demo.models import ModelStore, NotAvailable
from demo.settings import Settings, settings_from_args


@pytest.fixture
def store(settings):
    return ModelStore(settings)


def last(updates):
    """The final (textbox, history, emotion, status) a streaming handler yielded, and how many updates it made."""
    updates = list(updates)
    return updates[-1], len(updates)


# --- settings and input cleaning --------------------------------------------------------------------------

def test_settings_from_environment_and_arguments(monkeypatch, tmp_path):
    monkeypatch.setenv("EMPATHYGAIL_TRAINING", "0")
    assert Settings.from_env().training_enabled is False
    monkeypatch.delenv("EMPATHYGAIL_TRAINING")
    monkeypatch.setenv("SPACE_ID", "someone/empathygail")  # a public Space: no training unless asked for
    assert Settings.from_env().training_enabled is False
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setenv("EMPATHYGAIL_TRAINING", "1")
    parsed = settings_from_args(["--checkpoints-dir", str(tmp_path), "--port", "7999", "--no-training"])
    assert parsed.checkpoints_dir == tmp_path.resolve() and parsed.port == 7999 and not parsed.training_enabled
    with pytest.raises(ValueError, match="max_train_steps"):
        Settings(max_train_steps=0)


def test_app_builds_with_nothing_to_serve_and_training_off(tmp_path):
    from demo.app import build_app

    settings = Settings(checkpoints_dir=tmp_path / "none", results_dir=tmp_path / "none", work_dir=tmp_path / "w",
                        training_enabled=False)
    app = build_app(settings)
    tabs = [b.label for b in app.blocks.values() if isinstance(b, gr.Tab)]
    endpoints = {f.api_name for f in app.fns.values()}
    assert tabs == ["Chat", "Compare", "Arena", "Your message", "Review session", "Review", "Results"]
    assert {"respond", "compare", "vote", "arena_ask", "arena_vote_tie", "review"} <= endpoints
    assert "train" not in endpoints
    assert "No model found" in ModelStore(settings).missing() and "Train tab" not in ModelStore(settings).missing()


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0
    for option in ("--checkpoints-dir", "--data-dir", "--results-dir", "--host", "--port", "--no-training"):
        assert option in out.stdout


def test_clean_text_handles_hostile_input():
    assert clean_text("   \n\t ", 100).text == ""
    dirty = clean_text("hi\x00\x07 there\u200b\ud800 \ufeff ｆｕｌｌ\u202e", 100)
    assert dirty.text == "hi there full" and "control characters" in dirty.notes[0]
    long = clean_text("word " * 20_000, 1000)
    assert len(long.text) <= 1000 and "100,000 characters" in long.notes[0]
    assert clean_text(None, 10).text == "" and clean_text(12, 10).notes == ["expected text, got int"]
    assert clean_text("😢 Ça va? 你好", 100).text == "😢 Ça va? 你好"
    assert message_text([{"type": "text", "text": "a"}, {"type": "file"}, "b"]) == "a b"


# --- models ----------------------------------------------------------------------------------------------

def test_store_lists_empathygail_first_and_refuses_unknown_names(store):
    assert store.labels()[0] == "EmpathyGAIL" and set(store.labels()) == {"EmpathyGAIL", "MLE", "TextGAIL"}
    for bad in ("../../etc/passwd", "", None, "x" * 10_000):
        with pytest.raises(NotAvailable, match="unknown model"):
            store.responder(bad)
    assert store.missing() == ""


def test_no_checkpoint_says_what_is_missing_and_how_to_make_it(tmp_path):
    settings = Settings(checkpoints_dir=tmp_path / "none", work_dir=tmp_path / "work", results_dir=tmp_path)
    store = ModelStore(settings)
    assert store.labels() == []
    assert "No model found" in store.missing() and "python -m core train" in store.missing()
    box, history, _, status = list(chat.respond(store, settings, "hello", [], None))[-1]
    assert box == "hello" and history == [] and "No model found" in status
    table, _, status, _ = last(compare.compare(store, settings, "", "hello"))[0]
    assert table.empty and "No model found" in status


def test_corrupt_checkpoint_is_refused_with_a_clear_message(world, tmp_path):
    broken = tmp_path / "checkpoints" / "broken"
    shutil.copytree(world["checkpoints"] / "mle", broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    settings = Settings(checkpoints_dir=tmp_path / "checkpoints", work_dir=tmp_path / "work", results_dir=tmp_path)
    store = ModelStore(settings)
    with pytest.raises(NotAvailable, match="could not be loaded"):
        store.responder("MLE")
    box, history, _, status = list(chat.respond(store, settings, "hello", [], "MLE"))[-1]
    assert box == "hello" and history == [] and "could not be loaded" in status


# --- chat ------------------------------------------------------------------------------------------------

def test_chat_streams_a_reply_and_reads_the_emotion(store, settings):
    updates = list(chat.respond(store, settings, "I lost my job today.", [], "EmpathyGAIL", seed=1))
    box, history, emotion, status = updates[-1]
    # The box is emptied once, as the message is taken; later updates leave it to what the person types next.
    assert updates[0][0] == "" and all(u[0] == gr.skip() for u in updates[1:]) and len(updates) >= 3
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "I lost my job today." and history[1]["content"].strip()
    assert isinstance(emotion, dict) and abs(sum(emotion.values()) - 1) < 1e-4
    assert "Emotion in your messages so far" in status

    # A second turn carries the whole conversation; Gradio 6 sends content as a list of blocks.
    blocks = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in history]
    (_, history2, _, status2), _ = last(chat.respond(store, settings, "It was my dream job.", blocks, "MLE"))
    assert [m["role"] for m in history2] == ["user", "assistant"] * 2 and "→" in status2


def test_chat_shows_what_was_typed_as_text_and_the_model_reads_it_as_typed(store, settings):
    typed = "# HUGE <img src=x> & **stars**"
    (_, history, _, _), _ = last(chat.respond(store, settings, typed, [], "MLE"))
    assert history[0]["content"] == "# HUGE &lt;img src=x&gt; &amp; **stars**"
    assert chat.utterances(chat.messages(history), 1000)[0] == typed
    assert chat.undo(history) == ([], typed)


def test_a_message_in_a_script_the_models_never_read_gets_an_honest_answer(store, settings):
    (_, history, emotion, status), _ = last(chat.respond(store, settings, "我今天很难过", [], "MLE"))
    assert history[-1]["content"] == chat.ENGLISH_ONLY and emotion is None and "English only" in status
    (_, history, emotion, _), _ = last(chat.respond(store, settings, "Estoy muy triste hoy", [], "MLE"))
    assert history[-1]["content"] != chat.ENGLISH_ONLY and emotion  # Latin letters: read as the models can


def test_chat_seed_makes_replies_repeatable(store, settings):
    first = last(chat.respond(store, settings, "I passed my exam!", [], "MLE", seed=7))[0][1][-1]["content"]
    again = last(chat.respond(store, settings, "I passed my exam!", [], "MLE", seed=7))[0][1][-1]["content"]
    assert first == again


@pytest.mark.parametrize("message", ["", "   \n  ", "\x00\x01\x02", None, 42, ["list"]])
def test_chat_empty_or_odd_messages_get_a_clear_note(store, settings, message):
    box, history, _, status = list(chat.respond(store, settings, message, [{"role": "user", "content": "hi"},
                                                                           {"role": "assistant", "content": "yo"}],
                                                "EmpathyGAIL"))[-1]
    assert len(history) == 2 and "Nothing to send" in status and box == ""


def test_chat_truncates_a_huge_message_and_says_so(store, settings):
    (_, history, _, status), _ = last(chat.respond(store, settings, "sad " * 25_000, [], "MLE"))
    assert len(history[0]["content"]) <= settings.max_message_chars
    assert "100,000 characters" in status and "last 300" in status


@pytest.mark.parametrize("history", [None, "not a list", [1, 2, 3], [{"role": "system", "content": "x"}],
                                     [{"content": "no role"}], [{"role": "user", "content": {"weird": 1}}]])
def test_chat_survives_malformed_history(store, settings, history):
    (_, out, _, _), _ = last(chat.respond(store, settings, "hello", history, "MLE"))
    assert out[-1]["role"] == "assistant" and out[-2] == {"role": "user", "content": "hello"}


def test_chat_bounds_a_huge_history(store, settings):
    huge = [{"role": ("user", "assistant")[i % 2], "content": f"{i} " + "long words " * 200} for i in range(2000)]
    started = time.perf_counter()
    (_, history, emotion, status), _ = last(chat.respond(store, settings, "hello", huge, "MLE"))
    assert len(history) == 2002 and history[-1]["role"] == "assistant" and emotion
    assert status.count("→") == chat.EMOTION_TRAIL - 1 and time.perf_counter() - started < 20


def test_chat_crisis_message_gets_the_fixed_reply(store, settings):
    from core.safety import CRISIS_REPLY

    (_, history, _, status), _ = last(chat.respond(store, settings, "I want to kill myself tonight", [], "MLE"))
    assert chat.messages(history)[-1]["content"] == chat.CRISIS_BANNER + CRISIS_REPLY
    assert "crisis" in status and "not the model's" in status
    # The banner is for people; the model reads the support text itself.
    assert chat.utterances(chat.messages(history), 10_000)[-1] == CRISIS_REPLY


def test_decoding_values_are_clamped():
    d = chat.decoding_from(99, -1, 10_000, "abc", False)
    assert (d.temperature, d.top_p, d.max_new_tokens, d.seed, d.do_sample) == (2.0, 0.05, 100, None, True)
    d = chat.decoding_from(float("nan"), None, "7", 3.0, True)
    assert (d.temperature, d.top_p, d.max_new_tokens, d.seed, d.do_sample) == (0.9, 0.9, 7, 3, False)


def test_undo_gives_the_last_message_back():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
               {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    assert chat.undo(history) == (history[:2], "c")
    assert chat.undo([]) == ([], "")


# --- compare and votes -----------------------------------------------------------------------------------

def test_compare_replies_from_every_model_with_scores(store, settings):
    table, choices, status, record = last(compare.compare(store, settings, "Hi there.\nHello, how are you?",
                                                          "My dog died last week.", seed=3))[0]
    assert list(table["model"]) == ["EmpathyGAIL", "MLE", "TextGAIL"]
    assert table["D score"].between(0, 1).all() and (table["emotion"] != "").all()
    assert (table["words"] == table["reply"].str.split().str.len()).all()
    assert choices["choices"] == ["EmpathyGAIL", "MLE", "TextGAIL"] and "D score" in status
    assert record["history"] == ["Hi there.", "Hello, how are you?"] and set(record["replies"]) == set(table["model"])


def test_compare_bad_inputs(store, settings):
    table, _, status, record = last(compare.compare(store, settings, None, "   "))[0]
    assert table.empty and "type a prompt" in status and record == {}
    table, _, status, _ = last(compare.compare(store, settings, "\x00" * 50 + "\n" * 40, "x" * 5000))[0]
    assert len(table) == 3 and "5,000 characters" in status


def test_votes_are_saved_and_summarised(store, settings):
    _, _, _, record = last(compare.compare(store, settings, "", "I got a new puppy."))[0]
    assert "Compare first" in compare.vote(settings, "MLE", {})[0]
    assert "Pick one" in compare.vote(settings, "nobody", record)[0]
    compare.vote(settings, "MLE", record)
    message, rates = compare.vote(settings, "MLE", record)
    compare.vote(settings, "TextGAIL", record)
    assert "Saved" in message
    with settings.votes_path.open() as file:
        rows = list(csv.DictReader(file))
    assert [r["winner"] for r in rows] == ["MLE", "MLE", "TextGAIL"] and rows[0]["prompt"] == "I got a new puppy."
    rates = compare.win_rates(settings.votes_path).set_index("model")
    assert rates.loc["MLE", "wins"] == 2 and rates.loc["MLE", "comparisons"] == 3
    assert rates.loc["MLE", "win rate"] == pytest.approx(2 / 3, abs=1e-3) and rates.loc["EmpathyGAIL", "wins"] == 0


def test_win_rates_survive_a_damaged_file(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text('time,models,winner\nx,"not json",A\ny,"[""A"", ""B""]",B\n')
    assert compare.win_rates(path).set_index("model").loc["B", "wins"] == 1
    assert compare.win_rates(tmp_path / "missing.csv").empty


# --- review and results ----------------------------------------------------------------------------------

def test_review_shows_the_replies_first_and_cuts_a_long_history():
    rows = pd.DataFrame([{"source": "ed", "bucket": "3+", "emotion": "sad", "history": "x" * 500, "prompt": "p",
                          "expert": "e", "MLE": "m"}])
    shown = review.for_the_page(rows)
    assert list(shown.columns)[:3] == ["prompt", "expert", "MLE"]
    assert shown["history"][0] == "…" + "x" * review.HISTORY_CHARS and rows["history"][0] == "x" * 500


def test_review_filters_searches_and_exports(settings):
    rows, note = review.show(settings)
    assert len(rows) == 3 and "3 of 3" in note and {"EmpathyGAIL", "MLE", "TextGAIL"} <= set(rows.columns)
    assert len(review.show(settings, emotion="sad")[0]) == 1
    assert list(review.show(settings, source="dailydialog", bucket="3+")[0]["prompt"]) == ["I got a new puppy."]
    assert len(review.show(settings, search="PASSED my")[0]) == 1
    assert len(review.show(settings, search="MLE says hi")[0]) == 3
    assert review.show(settings, emotion="nope")[0].empty
    path, message = review.export(settings, source="empatheticdialogues")
    exported = pd.read_csv(path, keep_default_na=False)
    assert len(exported) == 2 and "Exported 2 rows" in message and Path(path).parent == settings.work_dir / "exports"


def test_review_and_results_without_an_evaluation(tmp_path):
    settings = Settings(checkpoints_dir=tmp_path, results_dir=tmp_path / "nothing", work_dir=tmp_path / "work")
    rows, note = review.show(settings)
    assert rows.empty and "not available yet" in note and "python -m core evaluate" in note
    assert review.export(settings)[0] is None
    table, plots, examples = results.read_results(settings.results_dir)
    assert "Not available yet" in table and plots == [] and examples == ""
    assert str(tmp_path) not in note + table  # visitors see no server paths


def test_results_show_the_table_and_plots(settings):
    table, plots, examples = results.read_results(settings.results_dir)
    assert "| Metric |" in table and "EmpathyGAIL" in table
    assert {Path(p).name for p, _ in plots} == {"perplexity_by_turns.png", "bleu_by_turns.png"}
    assert examples.strip()


# --- training ----------------------------------------------------------------------------------------------

FORM = dict(algorithm="mle", preset="none", base="MLE", steps=3, lr=1e-4, batch_size=4, kl_coef=0.05,
            d_pretrain_steps=0, seed=0)


def form(**changes):
    return list({**FORM, **changes}.values())


def test_training_request_without_data_is_refused(store, settings):
    runner = jobs.JobRunner()
    message = train.start(runner, store, settings, *form())
    assert "No training data" in message and runner.snapshot().state == jobs.IDLE
    assert "unknown algorithm" in train.start(runner, store, settings, *form(algorithm="dpo"))
    assert "unknown preset" in train.start(runner, store, settings, *form(preset="../../etc/passwd"))
    assert "unknown model" in train.start(runner, store, settings, *form(base="nope"))


def test_mle_starts_fresh_adapters_on_the_zero_shot_base_and_refuses_an_adapter(settings, tmp_path):
    from core.models.card import ModelCard

    zero_shot = tmp_path / "base-card"
    zero_shot.mkdir()
    ModelCard(name="smollm2-base", algorithm="base", kind="base", base={"name": "smollm2"}).save(zero_shot)
    request = train.parse_request(settings, *form(algorithm="mle", steps=5))
    config = train.build_config(settings, request, zero_shot, "run")
    assert config.generator.name_or_path == "smollm2" and config.generator.lora is not None
    assert config.steps == 5 and config.lr == request.lr and config.max_seconds is None
    assert train.recipe_lr("mle") == train.recipes.build_config("mle").lr  # the form shows the recipe's rate
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    ModelCard(name="some-mle", algorithm="mle").save(adapter)
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="'some-mle' is an adapter: MLE starts from the zero-shot base"):
        train.build_config(settings, request, adapter, "run")


def test_gail_request_is_capped(store, settings):
    request = train.parse_request(settings, *form(algorithm="empathygail", steps=10_000, batch_size=999, lr="x",
                                                  kl_coef=-3))
    # an unreadable rate falls back to the recipe's own
    assert (request.steps, request.batch_size, request.lr, request.kl_coef) == (60, 8, train.recipe_lr("empathygail"),
                                                                                0.0)
    config = train.build_config(settings, request, Path(store.card("MLE").path), "run")
    assert config.steps == 60 and config.buffer_size == 16 and config.algorithm == "empathygail"
    assert Path(config.output_dir) == settings.models_dir / "run" and config.init_from == store.card("MLE").path
    assert config.emotion_model == str(settings.emotion_dir)
    assert config.log_every == 1  # an evaluation is logged, and drawn, even when the run is stopped early


def test_progress_says_what_a_run_does_before_its_first_step():
    preparing = train.progress_html(jobs.Job(name="mle-app", state=jobs.RUNNING, total_steps=10))
    assert "step 0 of 10" in preparing and "reading the data and building the models" in preparing
    assert "reading the data" not in train.progress_html(jobs.Job(name="mle-app", state=jobs.RUNNING,
                                                                  total_steps=10, step=1))


@pytest.fixture
def with_data(world, tmp_path, monkeypatch):
    from demo.tiny_world import write_data_dir

    monkeypatch.setenv("EMPATHYGAIL_CACHE", str(tmp_path / "cache"))
    return Settings(checkpoints_dir=world["checkpoints"], results_dir=world["results"], work_dir=tmp_path / "work",
                    data_dir=write_data_dir(tmp_path / "data"))


def test_a_stopped_run_still_saves_its_model(with_data):
    with_data = replace(with_data, max_train_steps=10_000)  # a run the stop surely interrupts
    store, runner = ModelStore(with_data), jobs.JobRunner()
    assert "Started" in train.start(runner, store, with_data, *form(steps=10_000))
    while not runner.snapshot().metrics and runner.snapshot().active:
        time.sleep(0.05)
    message = train.stop_run(runner)
    assert "Stopping" in message and train.stop_message(runner, message) == gr.skip()
    job = runner.wait(120)
    assert job.state == jobs.STOPPED, job.error
    assert job.step < 10_000 and job.name in store.labels() and store.card(job.name).steps == job.step
    assert job.pid not in (0, os.getpid()) and "stopped" in train.progress_html(job)
    assert train.stop_message(runner, message) == f"Stopped at step {job.step}; the model is saved."


def test_a_failing_run_shows_one_line_and_frees_the_form(with_data, tmp_path):
    junk = tmp_path / "junk-data"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a dataset")
    settings = replace(with_data, data_dir=junk)
    store, runner = ModelStore(settings), jobs.JobRunner()
    assert "Started" in train.start(runner, store, settings, *form())
    job = runner.wait(120)
    assert job.state == jobs.FAILED and "not found" in job.error and str(junk) in job.error
    progress, *_, events, start_button, stop_button, seen, shown, model, missing = train.poll(
        runner, store, "", "", "EmpathyGAIL")
    assert "failed" in progress and "⚠️" in progress and "Traceback" not in progress and "Traceback" not in events
    assert start_button["interactive"] is True and stop_button["interactive"] is False and seen == ""


def test_a_tiny_mle_run_finishes_and_its_model_can_chat(with_data):
    settings = with_data
    store, runner = ModelStore(settings), jobs.JobRunner()
    assert "Started" in train.start(runner, store, settings, *form())
    assert "already going" in train.start(runner, store, settings, *form())
    job = runner.wait(120)
    assert job.state == jobs.FINISHED, job.error
    assert [m["step"] for m in job.metrics] == [1, 2, 3] and any("valid_ppl" in m for m in job.metrics)
    assert job.name in store.labels()
    (loss, title), (reward, _), _, (valid, _) = train.curves(job.metrics)
    assert list(loss["value"]) == [m["loss"] for m in job.metrics] and reward.empty and not valid.empty
    assert title == "Language-model loss (MLE)"  # not the discriminator's, which GAIL draws there

    outputs = train.poll(runner, store, "", "", "EmpathyGAIL")
    assert job.name in outputs[-2]["choices"] and outputs[-4] == job.model_dir
    (_, history, _, _), _ = last(chat.respond(store, settings, "hello", [], job.name))
    assert history[-1]["role"] == "assistant"


def test_the_base_is_prepared_at_start_only_when_a_model_needs_it(settings, tmp_path, monkeypatch):
    from core.models import base
    from core.models.card import ModelCard

    calls = []

    def unavailable(*args, **kwargs):
        calls.append(args)
        raise base.BaseUnavailable("cannot obtain the base: no network")

    monkeypatch.setattr(base, "ensure_base", unavailable)
    lines = []
    ModelStore(settings).prepare_base(lines.append)  # the tiny world's models are GPT-2s trained in full
    assert calls == [] and lines == []
    zero_shot = settings.models_dir / "smollm2-base"
    zero_shot.mkdir(parents=True)
    ModelCard(name="smollm2-base", algorithm="base", kind="base", base={"name": "smollm2"}).save(zero_shot)
    ModelStore(settings).prepare_base(lines.append)
    assert len(calls) == 1 and lines[-1] == "warning: cannot obtain the base: no network"


def test_while_the_models_load_a_visitor_is_told_so_and_keeps_their_message(settings):
    store = ModelStore(settings)
    seen = []

    def during_warm_up(message):
        seen.append((message, last(chat.respond(store, settings, "I lost my keys.", [], "MLE"))[0]))

    store.warm_up(during_warm_up)
    message, (box, history, _, status) = seen[-1]
    assert "3 models loaded" in message and store.loading is None
    assert box == "I lost my keys." and history == [] and "Loading the models" in status
    assert len(store._loaded) == 3 and store.missing() == ""
    (_, history, _, _), _ = last(chat.respond(store, settings, "I lost my keys.", [], "MLE"))
    assert history[-1]["role"] == "assistant"
