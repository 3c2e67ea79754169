"""`train all`: every stage runs in order from raw data files, and a second run resumes instead of retraining."""

import json

import pytest
import yaml

from core.pipeline import STAGES, is_done, run_pipeline
from core.engine.recipes import PRESETS_DIR
from core.models.card import list_models
from core.registry import load_responder
from demo.tiny_world import write_data_dir


@pytest.fixture
def micro_preset(tmp_path):
    """The tiny preset with every output under tmp_path and the sizes cut to the fixture data."""
    text = (PRESETS_DIR / "tiny.yaml").read_text().replace("runs/tiny/", f"{tmp_path}/")
    preset = yaml.safe_load(text)
    preset["pipeline"] = {"vocab_size": 300, "examples": 4, "evaluate": {
        "out": str(tmp_path / "results"), "seeds": 1, "max_examples": 6, "batch_size": 8, "embedding": False,
        "split": "train", "decoding": {"max_new_tokens": 6}}}
    for name in ("pretrain", "mle"):
        generator = preset[name]["generator"]
        if name == "pretrain":
            generator = {**generator, "n_positions": 64}
        preset[name].update(steps=4, eval_every=2, eval_batches=1, checkpoint_every=2, batch_size=2,
                            max_length=64, generator=generator)
    preset["emotion"].update(epochs=1, max_train_examples=None)
    preset["rl_seq2seq"].update(mle_steps=3, steps=1, batch_size=4, rollout_batch=4, minibatch_size=2,
                                eval_every=2, checkpoint_every=2, eval_examples=4, max_train_examples=None,
                                model={**preset["rl_seq2seq"]["model"], "max_length": 64})
    for name in ("textgail", "empathygail"):
        preset[name].update(steps=2, sample_batch_size=2, buffer_size=4, minibatch_size=2, d_pretrain_steps=1,
                            eval_every=1, eval_samples=2, checkpoint_every=1, d_batch_size=2,
                            decoding={"max_new_tokens": 6})
    preset["empathygail"].update(shaping_prior_samples=8)
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(preset))
    data = write_data_dir(tmp_path / "data")
    return path, [f"data.data_dir={data}", f"data.cache_dir={tmp_path / 'cache'}"]


@pytest.mark.slow
def test_train_all_runs_every_stage_then_resumes(micro_preset, tmp_path):
    preset, overrides = micro_preset
    lines = []
    outputs = run_pipeline(str(preset), STAGES, overrides, log=lines.append)

    models = {card.algorithm: card for card in list_models(tmp_path / "models")}
    assert set(models) == {"pretrain", "mle", "rl_seq2seq", "textgail", "empathygail"}
    for card in models.values():
        assert is_done(card.path)
        assert isinstance(load_responder(card.path).respond([], "I lost my job today."), str)
    summary = json.loads((outputs["evaluate"] / "summary.json").read_text())
    assert "empathygail" in json.dumps(summary) and (outputs["evaluate"] / "table.md").is_file()
    assert (outputs["evaluate"] / "examples.md").read_text().count("## Example ") == 4

    again = []
    run_pipeline(str(preset), STAGES[:-1], overrides, log=again.append)
    assert all("done already" in line or "not needed" in line for line in again if not line.endswith(" s")), again
    assert "[base] not needed: MLE starts from" in "\n".join(lines)  # the from-scratch GPT-2 needs no SmolLM2


def test_the_stages_a_start_model_needs(tmp_path):
    """MLE on the pretrained base needs neither the from-scratch tokenizer nor pretraining; MLE on the from-scratch
    GPT-2 needs both and no base."""
    from core.pipeline import _unneeded
    from core.engine.recipes import build_config

    def configs(start: str, lora: str):
        return {name: build_config(name, overrides=[f"output_dir={tmp_path / name}"] + (
            [f"generator.name_or_path={start}", f"generator.lora={lora}"] if name == "mle" else []))
            for name in ("pretrain", "mle", "rl_seq2seq")}

    on_base = configs("smollm2", "{r: 4}")
    outputs = {"rl_seq2seq": tmp_path / "rl_seq2seq"}  # not trained yet: its tokenizer is still needed
    assert _unneeded("base", on_base, outputs) == ""
    assert _unneeded("pretrain", on_base, outputs) == "MLE starts from smollm2"
    assert _unneeded("tokenizer", on_base, outputs) == ""
    from_scratch = configs(str(tmp_path / "pretrain"), "null")
    assert _unneeded("base", from_scratch, outputs).startswith("MLE starts from")
    assert _unneeded("pretrain", from_scratch, outputs) == "" and _unneeded("tokenizer", from_scratch, outputs) == ""
