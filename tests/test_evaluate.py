import json
import math
from collections.abc import Sequence

import datasets
import pandas as pd
import pytest
import torch

import core.scoring.evaluate as evaluate_module
from core.__main__ import main
from core.models.generator import Decoding, GeneratorConfig, build_generator
from core.models.card import ModelCard
from core.registry import Responder, ResponseScore, load_responder
from core.scoring.evaluate import EXPERT, GENERATIONS, EvalConfig, evaluate, resolve_models
from core.data import bucket
from core.scoring.report import write_report
from core.text import encode, train_tokenizer

DIALOGUES = [
    ("empatheticdialogues", "sad", ["My dog died last week.", "I am so sorry to hear that.",
                                    "He was my best friend.", "That must be so hard for you.",
                                    "It really is.", "Take all the time you need."]),
    ("empatheticdialogues", "joyful", ["I got the job!", "That is great news!", "I start on Monday.",
                                       "You must be so excited."]),
    ("dailydialog", "", ["Hi, how are you?", "Fine, thanks. And you?", "Not bad at all.", "Glad to hear it.",
                         "Shall we get lunch?", "Sure, let us go."]),
]


def trajectories() -> datasets.DatasetDict:
    rows = []
    for n, (source, emotion, utterances) in enumerate(DIALOGUES):
        for turn, start in enumerate(range(0, len(utterances) - 1, 2)):
            rows.append({"source": source, "split": "test", "conv_id": f"c{n}", "turn": turn,
                         "bucket": bucket(turn), "history": utterances[:start],
                         "history_speakers": ["speaker", "listener"] * (start // 2),
                         "prompt_speaker": "speaker", "response_speaker": "listener",
                         "prompt": utterances[start], "response": utterances[start + 1],
                         "emotion": emotion, "situation": ""})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    texts = [u for _, _, dialogue in DIALOGUES for u in dialogue] * 5
    tokenizer = train_tokenizer(texts, vocab_size=300, min_frequency=1)
    for name, seed, algorithm in (("tiny-mle", 0, "mle"), ("tiny-gail", 1, "empathygail")):
        torch.manual_seed(seed)
        model = build_generator(GeneratorConfig(n_layer=2, n_embd=32, n_head=2, n_positions=96), tokenizer)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        ModelCard(name=name, algorithm=algorithm).save(root / name)
    return root


def keyword_emotion(texts: list[str]) -> list[str]:
    return ["sad" if "sorry" in t.lower() else "joyful" for t in texts]


def length_discriminator(contexts, replies) -> torch.Tensor:
    return torch.tensor([len(r.split()) / 10 for r in replies])


def test_end_to_end_writes_every_file_and_rescore_reproduces_it(tiny_models, tmp_path):
    out = tmp_path / "results"
    config = EvalConfig(models=[str(tiny_models / "tiny-mle"), "tiny-gail"], checkpoints_dir=str(tiny_models),
                        seeds=2, decoding=Decoding(max_new_tokens=6), batch_size=4, out=str(out), device="cpu")
    results = evaluate(config, data=trajectories(), emotion=keyword_emotion, discriminator=length_discriminator)
    files = write_report(results, out)
    for path in [*files.values(), out / GENERATIONS]:
        assert path.is_file() and path.stat().st_size > 0, path
    assert files["perplexity_png"].read_bytes()[:4] == b"\x89PNG"
    bar = json.loads(files["quality_bar_json"].read_text())  # an EmpathyGAIL and an MLE model: the bar is judged
    assert [(b["candidate"], b["baseline"]) for b in bar] == [("tiny-gail", "tiny-mle")]
    assert len(bar[0]["verdicts"]) == 5 and all(v["verdict"] for v in bar[0]["verdicts"])
    assert "## Quality bar: tiny-gail (EmpathyGAIL) against tiny-mle (GPT-2+MLE)" in files["table_md"].read_text()

    table = results.table()
    models = {"tiny-mle", "tiny-gail"}
    assert set(table["model"]) == models | {EXPERT}
    assert set(table["bucket"]) == {"1", "2", "3+", "all"}
    expected_metrics = {"ppl_token", "ppl_word", "bleu", "bleu1", "bleu2", "distinct1", "distinct2", "length",
                        "emotion_acc", "disc"}
    assert expected_metrics <= set(table["metric"])
    assert ("embed_sim" in set(table["metric"])) != any("embed_sim left out" in n for n in results.meta["notes"])
    model_rows = table[table["model"].isin(models)]
    assert (model_rows["seeds"] == 2).all()
    assert model_rows[model_rows["metric"].isin(["ppl_token", "ppl_word"])]["std"].eq(0).all()

    # the expert replies' own reply-only metrics: 8 examples; the keyword reader is right on 3 of the 5 ED
    # replies (DailyDialog has no gold emotion here)
    expert = table[(table["model"] == EXPERT) & (table["bucket"] == "all")].set_index("metric")["mean"]
    assert expert["emotion_acc"] == pytest.approx(60.0)
    lengths = [len(r["expert"].split()) for r in results.records]
    assert expert["length"] == pytest.approx(sum(lengths) / 8)
    assert expert["disc"] == pytest.approx(sum(lengths) / 80)

    markdown = files["table_md"].read_text()
    assert "| Metric | Model | 1 Turn | 2 Turn | 3+ Turn | All |" in markdown
    assert "temperature=0.9" in markdown and "sacrebleu" in markdown
    wide = pd.read_csv(files["table_csv"])
    assert {"metric", "model", "1", "1_std", "3+", "all_std"} <= set(wide.columns)
    examples = files["examples_md"].read_text()
    assert "| Prompt |" in examples and "| tiny-gail |" in examples and "| Expert reply |" in examples
    # the side-by-side table holds the same examples, in order, as the sections after it
    order = [m["name"] for m in results.meta["models"]]
    assert f"| # | context (history / prompt) | {' | '.join(order)} | expert |" in examples
    rows = [line for line in examples.splitlines() if line[:2] == "| " and line.split(" | ")[0][2:].isdigit()]
    experts = [line[len("| Expert reply | "):-2] for line in examples.splitlines() if line.startswith("| Expert reply")]
    assert len(rows) == len(experts) == 6 and [row.split(" | ")[0] for row in rows] == [f"| {i}" for i in range(1, 7)]
    assert all(row.endswith(f"| {expert} |") for row, expert in zip(rows, experts))

    saved = [json.loads(line) for line in (out / GENERATIONS).read_text().splitlines()]
    assert len(saved) == 8 and {"history", "prompt", "expert", "source", "bucket", "emotion"} <= set(saved[0])
    assert all(len(r["replies"][m]) == 2 for r in saved for m in models)

    # no emotion reader or discriminator this time; every other number comes back the same from the JSONL
    assert main(["evaluate", "--rescore", "--out", str(out)]) == 0
    rescored = pd.read_csv(out / "table.csv")
    shared = wide[~wide["metric"].isin(["emotion_acc", "disc"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(rescored, shared)


def test_perplexity_matches_an_independent_computation(tiny_models, tmp_path):
    data = trajectories()
    config = EvalConfig(models=["tiny-mle"], checkpoints_dir=str(tiny_models), seeds=1, embedding=False,
                        decoding=Decoding(max_new_tokens=4), batch_size=3, out=str(tmp_path))
    table = evaluate(config, data=data).table()
    ppl = table[(table["metric"] == "ppl_token") & (table["bucket"] == "all")]["mean"].item()

    responder = load_responder(tiny_models / "tiny-mle")
    total, count = 0.0, 0
    for row in data["test"]:  # one example at a time: no padding, no batching
        e = encode(responder.tokenizer, row["history"], row["prompt"], row["response"], max_length=96)
        ids = torch.tensor([e.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(responder.model(input_ids=ids).logits[0].float(), dim=-1)
        for position in range(e.response_start, len(e.input_ids)):
            total += logp[position - 1, e.input_ids[position]].item()
            count += 1
    assert ppl == pytest.approx(math.exp(-total / count), rel=1e-4)


class KnownResponder(Responder):
    """Replies "i am so sorry" plus one "really" per (seed mod 3); every expert token has probability 1/2
    without history and 1/8 with it, and counts two tokens per word (its end token included)."""

    def __init__(self, card: ModelCard):
        self.card, self.seeds = card, []

    def respond_batch(self, contexts, decoding=None) -> list[str]:
        self.seeds.append(decoding.seed)
        return ["i am so sorry" + " really" * (decoding.seed % 3) for _ in contexts]

    def score_batch(self, contexts, responses: Sequence[str]) -> list[ResponseScore]:
        scores = []
        for (history, _), reply in zip(contexts, responses):
            words = len(reply.split()) + 1
            p = 0.5 if not history else 0.125
            scores.append(ResponseScore(logprob=2 * words * math.log(p), n_tokens=2 * words, n_words=words))
        return scores


def test_metrics_by_bucket_and_seed_with_a_known_responder(tmp_path, monkeypatch):
    (tmp_path / "known").mkdir()
    ModelCard(name="known", algorithm="mle").save(tmp_path / "known")
    responder = KnownResponder(ModelCard.load(tmp_path / "known"))
    monkeypatch.setattr(evaluate_module, "load_responder", lambda path, device: responder)
    rows = [{"source": "empatheticdialogues", "bucket": "1", "history": [], "prompt": "my dog died",
             "response": "i am so sorry", "emotion": "sad"},
            {"source": "empatheticdialogues", "bucket": "2", "history": ["a", "b"], "prompt": "i got the job",
             "response": "that is great news", "emotion": "joyful"}]
    data = datasets.Dataset.from_list(rows)
    config = EvalConfig(models=[str(tmp_path / "known")], seeds=3, embedding=False, batch_size=1,
                        out=str(tmp_path / "out"))
    results = evaluate(config, data=data, emotion=keyword_emotion)
    cell = results.table().set_index(["model", "metric", "bucket"])

    assert len(set(responder.seeds)) == 6  # a distinct seed for every run and batch
    assert cell.loc[("known", "ppl_token", "1"), "mean"] == pytest.approx(2.0)
    assert cell.loc[("known", "ppl_token", "2"), "mean"] == pytest.approx(8.0)
    assert cell.loc[("known", "ppl_token", "all"), "mean"] == pytest.approx(4.0)  # pooled: not (2 + 8) / 2
    assert cell.loc[("known", "ppl_word", "all"), "mean"] == pytest.approx(16.0)
    assert cell.loc[("known", "ppl_token", "all"), "std"] == 0.0
    assert cell.loc[("known", "emotion_acc", "all"), "mean"] == pytest.approx(50.0)

    # row 0 is sampled with seeds 0, 1000003, 2000006 (run s, batch offset 0): 0, 1 and 2 "really"s
    per_seed = results.scores.set_index(["model", "metric", "bucket", "seed"])["value"]
    assert [per_seed[("known", "length", "1", s)] for s in (0, 1, 2)] == [4.0, 5.0, 6.0]
    assert cell.loc[("known", "length", "1"), "mean"] == pytest.approx(5.0)
    assert cell.loc[("known", "length", "1"), "std"] == pytest.approx(1.0)
    assert [per_seed[("known", "bleu1", "1", s)] for s in (0, 1, 2)] == pytest.approx([100.0, 80.0, 400 / 6])


def test_greedy_decoding_makes_one_run(tiny_models, tmp_path):
    config = EvalConfig(models=["tiny-mle"], checkpoints_dir=str(tiny_models), seeds=3, embedding=False,
                        decoding=Decoding(do_sample=False, max_new_tokens=3), out=str(tmp_path), max_examples=2)
    results = evaluate(config, data=trajectories())
    assert results.meta["seeds"] == [0] and results.meta["examples"] == 2
    assert any("greedy" in note for note in results.meta["notes"])


def test_missing_encoder_leaves_the_column_out_with_a_note(tiny_models, tmp_path):
    config = EvalConfig(models=["tiny-mle"], checkpoints_dir=str(tiny_models), seeds=1, max_examples=2,
                        decoding=Decoding(max_new_tokens=3), encoder=str(tmp_path / "missing"), out=str(tmp_path))
    results = evaluate(config, data=trajectories())
    assert "embed_sim" not in set(results.scores["metric"])
    assert any(note.startswith("embed_sim left out") for note in results.meta["notes"])
    assert "embed_sim left out" in write_report(results, tmp_path)["table_md"].read_text()


def test_clear_errors(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="'nope' is neither a model directory"):
        resolve_models(["nope"], str(tiny_models))
    assert [c.name for c in resolve_models([str(tiny_models)])] == ["tiny-gail", "tiny-mle"]
    with pytest.raises(FileNotFoundError, match="without --rescore first"):
        evaluate(EvalConfig(rescore=True, out=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="split 'valid' not in the data"):
        evaluate(EvalConfig(models=["tiny-mle"], checkpoints_dir=str(tiny_models), split="valid",
                            out=str(tmp_path)), data=trajectories())
    assert main(["evaluate", "--rescore", "--out", str(tmp_path / "empty")]) == 2
