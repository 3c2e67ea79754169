from core import serve_bench
from core.registry import ModelCard
from tests.engine_fixtures import tiny_generator, toy_tokenizer


def test_serve_bench_loads_every_model_and_times_replies(tmp_path, capsys):
    tokenizer = toy_tokenizer()
    for name, algorithm in [("gpt2-mle", "mle"), ("empathygail", "empathygail")]:
        folder = tmp_path / name
        tiny_generator(tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        ModelCard(name, algorithm).save(folder)

    status = serve_bench.main(str(tmp_path), replies=3)

    out = capsys.readouterr().out
    assert "loaded 2 models" in out
    assert "gpt2-mle: one reply p50" in out and "empathygail: one reply p50" in out
    assert ("target 0.3 s: met" in out) == (status == 0)


def test_serve_bench_without_models_says_how_to_make_them(tmp_path, capsys):
    assert serve_bench.main(str(tmp_path)) == 1
    assert "python -m core train all" in capsys.readouterr().out


def test_percentile_picks_the_nearest_rank():
    assert serve_bench.percentile([0.1, 0.5, 0.2, 0.4, 0.3], 0.5) == 0.3
    assert serve_bench.percentile([0.1, 0.5, 0.2, 0.4, 0.3], 0.95) == 0.5
