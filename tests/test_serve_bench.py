import json

import pytest
import torch

from core import serve_bench
from core.models import generator
from core.models.card import ModelCard
from core.registry import load_responder
from tests.engine_fixtures import adapters_on_tiny_base, tiny_generator, toy_tokenizer


def test_serve_bench_loads_every_model_and_times_replies(tmp_path, capsys):
    tokenizer = toy_tokenizer()
    for name, algorithm in [("gpt2-mle", "mle"), ("empathygail", "empathygail")]:
        folder = tmp_path / name
        tiny_generator(tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        ModelCard(name, algorithm).save(folder)

    status = serve_bench.main(str(tmp_path), replies=3, rounds=2, examples=0, cold=False,
                              json_path=str(tmp_path / "serve.json"), app_starts=1)

    out = capsys.readouterr().out
    assert "serving 2 models" in out
    figures = json.loads((tmp_path / "serve.json").read_text())
    assert figures["model"] == "empathygail" and figures["warm start, loading only (s)"] > 0
    assert 0 < figures["app start, page (s)"] <= figures["app start, every model (s)"] < serve_bench.APP_TIMEOUT
    assert 0 < figures["first token p50 (s)"] <= figures["reply p50 (s)"] <= figures["reply p95 (s)"]
    assert figures["tokens/s"] > 0 and figures["speed-up, one reply"] > 0
    assert figures["compare / one reply"] == pytest.approx(figures["compare p50 (s)"] / figures["reply p50 (s)"])
    assert ("missed" in out) == (status == 1)


def test_the_adapter_rows_are_timed_beside_peft_s_own_mixed_batch(tmp_path):
    responders = [load_responder(path) for path in adapters_on_tiny_base(tmp_path)]
    figures = serve_bench.adapter_rows(responders, rounds=2)
    assert figures["adapter rows p50 (s)"] > 0 and figures["peft mixed batch p50 (s)"] > 0
    assert figures["speed-up, adapter rows"] == pytest.approx(figures["peft mixed batch p50 (s)"]
                                                              / figures["adapter rows p50 (s)"])
    assert serve_bench.adapter_rows(responders[:1], rounds=1) == {}  # one model on the base: nothing to batch


def test_serve_bench_without_models_says_how_to_make_them(tmp_path, capsys):
    assert serve_bench.main(str(tmp_path)) == 1
    assert "python -m core train all" in capsys.readouterr().out


def test_percentile_picks_the_nearest_rank():
    assert serve_bench.percentile([0.1, 0.5, 0.2, 0.4, 0.3], 0.5) == 0.3
    assert serve_bench.percentile([0.1, 0.5, 0.2, 0.4, 0.3], 0.95) == 0.5


def test_auto_precision_is_bfloat16_where_the_cpu_computes_in_it_natively(monkeypatch):
    monkeypatch.setattr(generator, "native_bfloat16", lambda: True)
    assert generator.serving_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(generator, "native_bfloat16", lambda: False)
    assert generator.serving_dtype("auto") == torch.float32
    assert generator.serving_dtype("auto", "cuda") == torch.bfloat16
    assert generator.serving_dtype("float32") == torch.float32
    with pytest.raises(ValueError, match="unknown precision"):
        generator.serving_dtype("int8")
