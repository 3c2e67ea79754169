"""scripts/gpu_ship.py: what travels to the device fits, what comes back is checked and lands where it belongs."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from core.engine.checkpoint import export_model
from core.models.card import ModelCard
from core.registry import load_responder
from engine_fixtures import tiny_generator, toy_tokenizer
from scripts import gpu_ship


@pytest.fixture
def shipped(tmp_path):
    """A device-side tree: one exported model, a results folder, a run's logs (and a checkpoint that stays)."""
    root = tmp_path / "device"
    tokenizer = toy_tokenizer(tmp_path / "tokenizer")
    card = ModelCard(name="toy", algorithm="mle", data="toy", steps=7, config={},
                     metrics={"complete": True, "stop_reason": "time budget"}, wall_time_s=12.0, hardware="H100")
    export_model(tiny_generator(tokenizer), tokenizer, card, root / "checkpoints" / "mle", dtype="float16")
    (root / "results").mkdir()
    (root / "results" / "table.md").write_text("| model | BLEU |\n")
    (root / "runs" / "mle").mkdir(parents=True)
    (root / "runs" / "mle" / "metrics.jsonl").write_text('{"step": 7}\n')
    (root / "runs" / "mle" / "checkpoint-00000007").mkdir()
    files = [root / "checkpoints" / "mle", root / "results", root / "runs" / "mle" / "metrics.jsonl",
             root / "checkpoints" / "missing"]  # a stage that never finished: skipped
    return root, files


@pytest.fixture
def repo(tmp_path):
    """The developer's tree: a README beside an older model, stale results, a run folder with its checkpoints."""
    root = tmp_path / "repo"
    (root / "checkpoints" / "mle").mkdir(parents=True)
    (root / "checkpoints" / "README.md").write_text("models\n")
    (root / "checkpoints" / "mle" / "old.safetensors").write_text("old")
    (root / "results").mkdir()
    (root / "results" / "stale.png").write_text("old plot")
    (root / "runs" / "mle" / "checkpoint-00000003").mkdir(parents=True)
    (root / "runs" / "mle" / "metrics.jsonl").write_text('{"step": 3}\n')
    return root


def test_packed_parts_unpack_into_place(tmp_path, shipped, repo):
    root, files = shipped
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu_ship.pack(files, root, out, extra={"preset": "h100"}, part_bytes=20_000)
    assert len(parts) > 1 and all(p.stat().st_size <= 20_000 for p in parts)
    manifest = json.loads((out / gpu_ship.MANIFEST).read_text())
    assert manifest["parts"] == [p.name for p in parts] and manifest["preset"] == "h100"

    placed = gpu_ship.unpack(out, repo)
    assert (repo / "checkpoints" / "README.md").read_text() == "models\n"  # untouched
    assert not (repo / "checkpoints" / "mle" / "old.safetensors").exists()  # the model folder replaced whole
    assert load_responder(repo / "checkpoints" / "mle", allowed_roots=[repo / "checkpoints"]).card.steps == 7
    assert sorted(p.name for p in (repo / "results").iterdir()) == ["table.md"]  # no stale plot beside the new
    assert (repo / "runs" / "mle" / "metrics.jsonl").read_text() == '{"step": 7}\n'
    assert (repo / "runs" / "mle" / "checkpoint-00000003").is_dir()  # a run folder keeps its checkpoints
    assert "mle: 7 steps, complete True, time budget, 12 s on H100" in gpu_ship.summary(placed)


def test_altered_or_missing_parts_unpack_nothing(tmp_path, shipped, repo):
    root, files = shipped
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu_ship.pack(files, root, out, extra={}, part_bytes=20_000)
    data = bytearray(parts[0].read_bytes())
    data[100] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(ValueError, match="incomplete or altered"):
        gpu_ship.unpack(out, repo)
    parts[-1].unlink()
    with pytest.raises(FileNotFoundError):
        gpu_ship.unpack(out, repo)
    assert (repo / "checkpoints" / "mle" / "old.safetensors").exists()
    assert (repo / "results" / "stale.png").exists()


def test_an_archive_that_cannot_come_back_is_refused(tmp_path, shipped):
    root, files = shipped
    with pytest.raises(ValueError, match="parts of"):
        gpu_ship.pack(files, root, tmp_path, extra={}, part_bytes=1_000)


def test_travel_size_counts_tracked_and_unignored_files_and_the_staged_folder(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("/runs/\n")
    (tmp_path / "tracked.py").write_bytes(b"x" * 1000)
    git("add", ".")
    (tmp_path / "new.py").write_bytes(b"y" * 300)  # untracked, not ignored: travels
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "big.bin").write_bytes(b"z" * 10_000)  # ignored: stays
    (tmp_path / ".device").mkdir()
    (tmp_path / ".device" / "data.tar.xz").write_bytes(b"d" * 500)  # carried
    (tmp_path / ".git" / "info" / "exclude").write_text("/.device/\n")
    assert gpu_ship.travel_size(tmp_path) == 1000 + 300 + 500 + len("/runs/\n")


def test_ship_packs_what_this_call_wrote_and_skips_evaluation_after_a_training_timeout(tmp_path, monkeypatch):
    repo, out = tmp_path / "repo", tmp_path / "out"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "table.md").write_text("the previous results, which travelled with the tree")
    calls = []

    def run(name, command, env, log, timeout):
        calls.append((name, timeout))
        if name == "training":  # the base model finished, then training ran out of time
            (repo / "checkpoints" / "pretrain").mkdir(parents=True)
            (repo / "checkpoints" / "pretrain" / "model.safetensors").write_text("weights")
        return name != "training"

    monkeypatch.setattr(gpu_ship, "REPO", repo)
    monkeypatch.setattr(gpu_ship, "_run", run)
    monkeypatch.setattr(gpu_ship, "shipped_paths", lambda preset: [repo / "checkpoints" / "pretrain",
                                                                   repo / "checkpoints" / "mle", repo / "results"])
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="no GPU visible"):  # a device call must not spend its minutes on the CPU
        gpu_ship.ship("tiny", deadline_s=100, out=out)
    assert calls == []
    assert gpu_ship.ship("tiny", deadline_s=100, out=out, allow_cpu=True) == 1
    assert [name for name, _ in calls] == ["versions", "training"]
    assert calls[1][1] <= 100 - gpu_ship.PACK_RESERVE_S
    manifest = json.loads((out / gpu_ship.MANIFEST).read_text())
    assert manifest["finished"] == {"training": False, "evaluate": False} and manifest["preset"] == "tiny"
    back = tmp_path / "back"
    (back / "results").mkdir(parents=True)
    placed = gpu_ship.unpack(out, back)
    assert [p.relative_to(back).as_posix() for p in placed] == ["checkpoints/pretrain"]  # not the old results


def test_the_shipped_size_fits_the_checkpoint_budget(tmp_path):
    """Four GPT-2 models (base, MLE, TextGAIL, EmpathyGAIL), RL-Seq2Seq, the two discriminators and the emotion
    model at the h100 recipe's size, exported as they ship, fit 64 MiB; no file is over 16 MiB."""
    import random

    from core.data import ED_EMOTIONS
    from core.engine.recipes import build_config
    from core.models.discriminator import Discriminator
    from core.models.emotion import EmotionClassifier, EmotionConfig
    from core.models.generator import build_generator
    from core.models.seq2seq import build_seq2seq
    from core.text import VOCAB_SIZE, train_tokenizer

    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(20000)]
    tokenizer = train_tokenizer([" ".join(rng.choices(words, k=12)) for _ in range(20000)])
    assert len(tokenizer) == VOCAB_SIZE
    card = ModelCard(name="size", algorithm="pretrain", data="-", steps=0, config={})
    generator = build_generator(build_config("pretrain", preset="h100").generator, tokenizer)
    gpt2 = export_model(generator, tokenizer, card, tmp_path / "gpt2",
                        dtype=build_config("mle", preset="h100").export_dtype)
    seq2seq_config = build_config("rl_seq2seq", preset="h100")
    build_seq2seq(seq2seq_config.model, tokenizer, ED_EMOTIONS).save_pretrained(tmp_path / "s2s",
                                                                               seq2seq_config.export_dtype)
    for name in ("textgail", "empathygail"):  # each ships its discriminator: the head and MiniLM's trained top layer
        gail = build_config(name, preset="h100")
        config = dataclasses.replace(gail.discriminator, use_emotion_features=False, emotion_model=None)
        Discriminator(config).save_pretrained(tmp_path / name, gail.export_dtype)
    EmotionClassifier(EmotionConfig()).save_pretrained(tmp_path / "emotion")  # its head, as trained (float32)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert max(p.stat().st_size for p in files) <= 16 * 2**20
    size = lambda folder: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())  # noqa: E731
    # emotion/, and its copies in rl_seq2seq/ and in EmpathyGAIL's discriminator (which reads the emotional course)
    total = (4 * size(gpt2) + size(tmp_path / "s2s") + size(tmp_path / "textgail") + size(tmp_path / "empathygail")
             + 3 * size(tmp_path / "emotion"))
    assert total <= 64 * 2**20, f"{total / 2**20:.1f} MiB"


def test_stage_packs_the_data_the_readers_read_and_refuses_a_tree_too_big_to_travel(tmp_path, monkeypatch):
    import tarfile

    from demo.tiny_world import write_data_dir

    data = write_data_dir(tmp_path / "data")
    repo = tmp_path / "repo"
    (repo / "checkpoints" / "mle").mkdir(parents=True)
    (repo / "checkpoints" / "mle" / "model.safetensors").write_bytes(b"w" * 50_000)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    monkeypatch.setattr(gpu_ship, "REPO", repo)
    monkeypatch.setattr(gpu_ship, "_minilm_float16", lambda out: out.mkdir(parents=True, exist_ok=True))  # 45 MB
    staged = repo / ".device"

    monkeypatch.setattr(gpu_ship, "TRAVEL_LIMIT", 10_000)
    with pytest.raises(SystemExit, match="mv checkpoints/mle /tmp/preview/"):
        gpu_ship.stage(data, staged, wheels=False)
    monkeypatch.setattr(gpu_ship, "TRAVEL_LIMIT", 64 * 2**20)
    size = gpu_ship.stage(data, staged, wheels=False)
    with tarfile.open(staged / "data.tar.xz") as archive:
        names = archive.getnames()
    assert all(name in names for name in gpu_ship.DATA_PATHS)
    assert size >= 50_000 + (staged / "data.tar.xz").stat().st_size

    monkeypatch.setenv("EMPATHYGAIL_DATA", str(tmp_path / "nowhere"))  # the device: no data of its own
    monkeypatch.setattr(gpu_ship, "STAGE_DIR", staged)
    env = gpu_ship._device_inputs()
    from core.data import DataConfig, load_trajectories

    unpacked = load_trajectories(DataConfig(data_dir=env["EMPATHYGAIL_DATA"], cache_dir=str(tmp_path / "cache")))
    assert len(unpacked["train"]) > 0
