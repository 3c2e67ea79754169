"""Readers, trajectories, splits, cache and the `data` command, on fixture files written here (and the real data)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest
from fixtures_data import DD_SKIPS, ED_SKIPS, QUOTE_SKIPS, REFRAME_SKIPS

from core.cli import data as data_command
from core.data import (
    DD_EMOTIONS,
    ED_EMOTIONS,
    SOURCES,
    DataConfig,
    build_trajectories,
    load_trajectories,
    read_conversations,
    trajectories,
)
from core.data.dailydialog import read_dailydialog
from core.data.empathetic import read_empatheticdialogues
from core.data.trajectories import to_dataset_dict, turn_starts
from core.data.uplifting import read_quotes, read_reframes
from demo.tiny_world import ED, QUOTES, REFRAMES, write_data_dir, write_ed_official, write_ed_shared


@pytest.fixture
def data_dir(tmp_path):
    return write_data_dir(tmp_path / "data")


def rows_of(dataset_dict, source, conv_id):
    rows = [row for split in dataset_dict.values() for row in split if row["conv_id"] == conv_id]
    return [row for row in rows if row["source"] == source]


def splits_per_conversation(dataset_dict) -> pd.Series:
    columns = ["source", "conv_id", "split"]
    frame = pd.concat([rows.select_columns(columns).to_pandas() for rows in dataset_dict.values()])
    return frame.groupby(["source", "conv_id"])["split"].nunique()


def run_data_command(argv: list[str]) -> int:
    """`python -m core data ...` without importing every other command's dependencies."""
    parser = argparse.ArgumentParser()
    data_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_label_lists():
    assert len(ED_EMOTIONS) == 32 and len(set(ED_EMOTIONS)) == 32
    assert DD_EMOTIONS == ("no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


@pytest.mark.parametrize(
    ("speakers", "overlapping", "expected"),
    [
        ("ABABA", False, [0, 2]),
        ("ABABA", True, [0, 1, 2, 3]),
        ("AB", False, [0]),
        ("A", False, []),
        ("AABAB", False, [1, 3]),  # an utterance the other speaker never answered stays history
        ("ABBA", True, [0, 2]),
    ],
)
def test_turn_starts(speakers, overlapping, expected):
    assert turn_starts(list(speakers), overlapping) == expected


def test_empathetic_trajectories_non_overlapping(data_dir):
    dataset = build_trajectories(DataConfig(data_dir=str(data_dir), sources=("empatheticdialogues",)))
    rows = rows_of(dataset, "empatheticdialogues", "hit:0_conv:1")
    u = ED["train"]["hit:0_conv:1"][2]
    fields = ("turn", "bucket", "history", "history_speakers", "prompt", "response")
    assert [tuple(r[f] for f in fields) for r in rows] == [
        (0, "1", [], [], u[0], u[1]),
        (1, "2", u[:2], ["speaker", "listener"], u[2], u[3]),
    ]  # the fifth utterance has no reply and makes no turn
    assert {(r["prompt_speaker"], r["response_speaker"]) for r in rows} == {("speaker", "listener")}
    assert {(r["emotion"], r["situation"], r["split"]) for r in rows} == {
        ("sentimental", "My dog, Rex, died.", "train")
    }
    assert [len(dataset[s]) for s in ("train", "valid", "test")] == [3, 1, 1]


def test_empathetic_trajectories_overlapping(data_dir):
    config = DataConfig(data_dir=str(data_dir), sources=("empatheticdialogues",), overlapping=True)
    rows = rows_of(build_trajectories(config), "empatheticdialogues", "hit:0_conv:1")
    u = ED["train"]["hit:0_conv:1"][2]
    roles = ["speaker", "listener"] * 3
    assert [(r["turn"], r["bucket"], r["history"], r["history_speakers"]) for r in rows] == [
        (0, "1", [], []),
        (1, "2", u[:1], roles[:1]),
        (2, "3+", u[:2], roles[:2]),
        (3, "3+", u[:3], roles[:3]),
    ]
    assert [(r["prompt"], r["response"], r["prompt_speaker"]) for r in rows] == [
        (u[i], u[i + 1], roles[i]) for i in range(4)
    ]


def test_both_empathetic_dialects_read_the_same(tmp_path):
    write_ed_shared(tmp_path / "shared")
    write_ed_official(tmp_path / "official")
    shared, shared_report = read_empatheticdialogues(tmp_path / "shared")
    official, official_report = read_empatheticdialogues(tmp_path / "official")
    assert official == shared  # `_comma_` decoded, roles from parity, candidates column ignored
    assert [c.utterances[0].text for c in shared][:1] == ["My dog died, sadly."]
    for report in (shared_report, official_report):
        assert dict(report.skipped) == ED_SKIPS
        assert report.conversations == 4
        assert report.rows_read == 12 + sum(ED_SKIPS.values())
        assert all(report.examples[reason] for reason in ED_SKIPS)


def test_official_dialect_notes_workers_that_do_not_alternate(tmp_path):
    folder = tmp_path / "empatheticdialogues"
    folder.mkdir()
    header = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    (folder / "train.csv").write_text(header + "c1,1,sad,s,7,Hello,,\nc1,2,sad,s,7,Hi,,\n")
    for split in ("valid", "test"):
        (folder / f"{split}.csv").write_text(header)
    conversations, report = read_empatheticdialogues(tmp_path)
    assert [u.speaker for u in conversations[0].utterances] == ["speaker", "listener"]
    assert report.notes["speaker_idx does not alternate (roles follow parity)"] == 1


def test_dailydialog_reader_keeps_and_reports_quirks(data_dir):
    conversations, report = read_dailydialog(data_dir)
    assert dict(report.skipped) == DD_SKIPS
    assert report.notes == {
        "dialogue repeated within train (kept)": 1,
        "validation dialogue also in train (kept)": 1,
        'utterances without an emotion label (kept, labelled "")': 1,
        'utterances without an act label (kept, labelled "")': 1,
    }
    assert [c.conv_id for c in conversations] == ["train:0", "train:1", "train:2", "validation:0", "test:0"]
    short = conversations[1]
    assert short.utterances == [
        ("A", "Can we stop ?", "no emotion"),
        ("B", "Why ?", "surprise"),
        ("A", "I need a bike .", ""),
    ]
    assert short.acts == ["question", "question", ""]
    assert report.rows_read == 3 + 3 + 1 + 1


def test_dailydialog_trajectories(data_dir):
    config = DataConfig(data_dir=str(data_dir), sources=("dailydialog",), overlapping=True)
    rows = rows_of(build_trajectories(config), "dailydialog", "train:0")
    assert [(r["turn"], r["bucket"], r["prompt_speaker"], r["response_speaker"], r["emotion"]) for r in rows] == [
        (0, "1", "A", "B", "no emotion"),
        (1, "2", "B", "A", "no emotion"),
        (2, "3+", "A", "B", "happiness"),  # the prompt's label, not the response's
    ]
    assert rows[2]["history"] == ["Hi , Tom .", "Hello , Ann ."] and rows[2]["history_speakers"] == ["A", "B"]
    assert {r["situation"] for r in rows} == {""}


def test_uplifting_readers(data_dir):
    quotes, quote_report = read_quotes(data_dir)
    reframes, reframe_report = read_reframes(data_dir)
    assert [c.utterances[0].text for c in quotes] == QUOTES
    assert dict(quote_report.skipped) == QUOTE_SKIPS
    assert dict(reframe_report.skipped) == REFRAME_SKIPS
    assert [(c.split, c.utterances[0].text, c.utterances[1].text) for c in reframes] == [
        (split, tweet, reframe) for split, pairs in REFRAMES.items() for tweet, reframe in pairs
    ]
    dataset = build_trajectories(DataConfig(data_dir=str(data_dir), sources=("quotes", "reframes")))
    rows = [row for split in dataset.values() for row in split]
    quote_rows = [r for r in rows if r["source"] == "quotes"]
    assert sorted(r["prompt"] for r in quote_rows) == sorted(QUOTES)
    assert all(r["prompt"] == r["response"] and r["history"] == [] and r["bucket"] == "1" for r in quote_rows)
    reframe = next(r for r in rows if r["source"] == "reframes" and r["split"] == "valid")
    assert (reframe["history"], reframe["prompt"], reframe["response"]) == ([], *REFRAMES["valid"][0])


@pytest.mark.parametrize("split_mode", ["official", "random"])
def test_no_conversation_in_two_splits(data_dir, split_mode):
    config = DataConfig(data_dir=str(data_dir), split_mode=split_mode, overlapping=True)
    dataset = build_trajectories(config)
    assert splits_per_conversation(dataset).max() == 1
    assert set(dataset) == {"train", "valid", "test"}
    assert all(row_split == split for split in dataset for row_split in dataset[split]["split"])


def test_random_split_is_seeded_and_follows_the_fractions(data_dir):
    def splits(seed):
        conversations, _ = read_conversations(DataConfig(data_dir=str(data_dir), split_mode="random", seed=seed))
        return {(c.source, c.conv_id): c.split for c in conversations}

    assert splits(1) == splits(1)
    assert Counter(s for (source, _), s in splits(1).items() if source == "quotes") == {"train": 4, "test": 1}
    reframes = Counter(s for (source, _), s in splits(3).items() if source == "reframes")
    assert sum(reframes.values()) == 4 and reframes["train"] == 3  # round(0.7 * 4)


def test_official_split_mode_keeps_release_splits(data_dir):
    conversations, _ = read_conversations(DataConfig(data_dir=str(data_dir)))
    by_id = {(c.source, c.conv_id): c.split for c in conversations}
    assert by_id[("empatheticdialogues", "hit:1_conv:3")] == "valid"
    assert by_id[("dailydialog", "validation:0")] == "valid"
    assert by_id[("reframes", "test:1")] == "test"


def test_missing_paths_name_the_path_and_layout(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="data directory not found: .*nowhere"):
        read_conversations(DataConfig(data_dir=str(tmp_path / "nowhere")))
    (data_dir / "empatheticdialogues" / "valid.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)valid\.csv.*expected layout.*empatheticdialogues/train\.csv"):
        read_empatheticdialogues(data_dir)
    (data_dir / "dailydialog" / "test" / "dialogues_act_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)dialogues_act_test\.txt.*dailydialog/validation"):
        read_dailydialog(data_dir)
    (data_dir / "uplifting_texts" / "quotes_merged.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="quotes_merged.jsonl"):
        read_quotes(data_dir)


def test_bad_header_and_bad_config_are_clear(data_dir):
    (data_dir / "empatheticdialogues" / "test.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"test\.csv: unrecognised EmpatheticDialogues header 'a,b,c'"):
        read_empatheticdialogues(data_dir)
    with pytest.raises(ValueError, match="known: empatheticdialogues"):
        DataConfig(sources=("tweets",))
    with pytest.raises(ValueError, match="split_mode"):
        DataConfig(split_mode="by_turn")
    with pytest.raises(ValueError, match="fractions"):
        DataConfig(fractions=(0.5, 0.2, 0.1))


def test_cache_is_reused_and_rebuilt_when_a_source_changes(data_dir, tmp_path, monkeypatch):
    builds = []
    real_build = trajectories.build_trajectories
    monkeypatch.setattr(trajectories, "build_trajectories", lambda config: builds.append(1) or real_build(config))
    config = DataConfig(data_dir=str(data_dir), sources=("quotes", "dailydialog"), cache_dir=str(tmp_path / "cache"))

    first = load_trajectories(config)
    again = load_trajectories(config)
    assert len(builds) == 1
    assert again["train"].to_list() == first["train"].to_list()
    assert load_trajectories(DataConfig(**{**vars(config), "overlapping": True})) and len(builds) == 2

    with open(data_dir / "uplifting_texts" / "quotes_merged.jsonl", "a") as handle:
        handle.write(json.dumps({"text": "A brand new quote."}) + "\n")
    rebuilt = load_trajectories(config)
    assert len(builds) == 3
    assert sum(len(split) for split in rebuilt.values()) == sum(len(split) for split in first.values()) + 1


def test_a_build_prunes_the_least_recently_used_caches_and_nothing_else(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trajectories, "KEEP_CACHES", 2)
    cache = tmp_path / "cache"
    config = DataConfig(data_dir=str(data_dir), sources=("quotes",), cache_dir=str(cache))
    configs = [DataConfig(**{**vars(config), "seed": seed}) for seed in range(4)]  # the seed changes the fingerprint
    folders = [trajectories.cache_path(c) for c in configs]
    root = folders[0].parent
    root.mkdir(parents=True)
    being_written = root / f"{folders[3].name}.partial-12345"  # another process's build, not renamed yet
    ours_unfinished = root / ("0" * 20)  # a fingerprint's name but no saved DatasetDict: not a cache
    for foreign in (being_written, ours_unfinished, root / "notes"):
        foreign.mkdir()
        (foreign / "keep.txt").write_text("not ours to remove")
    (root / "README").write_text("neither")

    for age, c in enumerate(configs[:2]):  # built an hour and half an hour ago
        load_trajectories(c)
        os.utime(trajectories.cache_path(c), (time.time() - 3600 / (age + 1),) * 2)
    assert all(f.is_dir() for f in folders[:2])
    load_trajectories(configs[2])  # builds, and keeps itself and the newer of the two others
    assert [f.is_dir() for f in folders[:3]] == [False, True, True]

    os.utime(folders[2], (time.time() - 7200,) * 2)
    assert load_trajectories(configs[1])["train"].num_rows  # a cached load marks folders[1] as just used
    load_trajectories(configs[3])
    assert [f.is_dir() for f in folders] == [False, True, False, True]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [folders[1].name, folders[3].name, being_written.name, ours_unfinished.name, "notes", "README"])
    assert all((f / "keep.txt").read_text() == "not ours to remove" for f in (being_written, ours_unfinished))
    assert load_trajectories(configs[0])["train"].num_rows == load_trajectories(configs[1])["train"].num_rows


def test_prune_caches_always_keeps_the_current_one(data_dir, tmp_path):
    cache = tmp_path / "cache"
    configs = [DataConfig(data_dir=str(data_dir), sources=("quotes",), seed=s, cache_dir=str(cache)) for s in range(3)]
    for c in configs:
        load_trajectories(c)
    folders = [trajectories.cache_path(c) for c in configs]
    for age, folder in enumerate(folders):
        os.utime(folder, (time.time() - 100 * (3 - age),) * 2)
    root = folders[0].parent
    (root / "elsewhere").mkdir()
    (root / ("ab" * 10)).symlink_to(root / "elsewhere", target_is_directory=True)
    assert trajectories.prune_caches(root, keep=1, current=folders[0]) == [folders[2], folders[1]]
    assert sorted(p.name for p in root.iterdir()) == sorted([folders[0].name, "ab" * 10, "elsewhere"])
    assert trajectories.prune_caches(root, keep=5) == []


def test_an_interrupted_build_leaves_no_partial_folder(data_dir, tmp_path, monkeypatch):
    def save_then_fail(self, path, **kwargs):
        Path(path).mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", save_then_fail)
    config = DataConfig(data_dir=str(data_dir), sources=("quotes",), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(KeyboardInterrupt):
        load_trajectories(config)
    assert list(trajectories.cache_path(config).parent.iterdir()) == []


def test_data_command(data_dir, tmp_path, capsys):
    common = ["--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]
    assert run_data_command(["data", "stats", "--json", *common]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["trajectories"]["empatheticdialogues"] == {"train": 3, "valid": 1, "test": 1}
    assert stats["conversations"]["dailydialog"] == {"train": 3, "valid": 1, "test": 1}
    assert stats["paper"]["empatheticdialogues"] == {"ours": 5, "paper": 79_353}
    skipped = {r["source"]: r["rows_skipped"] for r in stats["reads"]}
    assert skipped == {"empatheticdialogues": 4, "dailydialog": 3, "quotes": 2, "reframes": 2}
    assert stats["build_seconds"] >= 0

    assert run_data_command(["data", "stats", "--overlapping", "--split-mode", "random", *common]) == 0
    text = capsys.readouterr().out
    assert "overlapping turns, random splits" in text and "skipped 1 x non-integer label" in text

    assert run_data_command(["data", "build", "--sources", "quotes", *common]) == 0
    assert "built in" in capsys.readouterr().out
    assert run_data_command(["data", "build", "--sources", "quotes", *common]) == 0
    assert "loaded in" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        run_data_command(["data", "build", "--data-dir", str(tmp_path / "absent")])


@pytest.mark.real_data
def test_real_trajectories(real_data_dir):
    conversations, reports = read_conversations(
        DataConfig(data_dir=str(real_data_dir), sources=("empatheticdialogues", "dailydialog"))
    )
    per_split = Counter((c.source, c.split) for c in conversations)
    assert [per_split["empatheticdialogues", s] for s in ("train", "valid", "test")] == [19_533, 2_770, 2_547]
    assert [per_split["dailydialog", s] for s in ("train", "valid", "test")] == [11_118, 1_000, 1_000]
    assert all(report.rows_skipped == 0 for report in reports)
    dd_report = reports[1]
    assert dd_report.notes["dialogue repeated within train (kept)"] == 569
    assert dd_report.notes['utterances without an emotion label (kept, labelled "")'] == 1

    listener_turns = [40_254, 5_738, 5_259]  # data README; u1->u2, u3->u4 answers are exactly the listener turns
    for overlapping in (False, True):
        dataset = to_dataset_dict(conversations, overlapping)
        for split, expected in zip(("train", "valid", "test"), listener_turns):
            rows = dataset[split].select_columns(["source", "response_speaker"]).to_pandas()
            ed = rows[rows["source"] == "empatheticdialogues"]
            assert (ed["response_speaker"] == "listener").sum() == expected
            if not overlapping:
                assert len(ed) == expected
        assert splits_per_conversation(dataset).max() == 1
    assert set(dataset["train"]["emotion"][:5000]) <= set(ED_EMOTIONS) | set(DD_EMOTIONS) | {""}
    assert SOURCES == ("empatheticdialogues", "dailydialog", "quotes", "reframes")
