"""Counts of expert trajectories (source x split, turn bucket, emotion), build time, read reports, paper figures."""

from __future__ import annotations

import dataclasses
import time

import datasets
import pandas as pd

from core.data.records import Conversation, ReadReport
from core.data.trajectories import DataConfig, read_conversations, to_dataset_dict

# Section 4.2 of the method paper.
PAPER_COUNTS = {"empatheticdialogues": 79_353, "dailydialog": 61_935, "tweets": 67_312}
PAPER_NOTE = (
    "The paper's counts fit no turn definition on the full releases (ED 51,251 non-overlapping = its listener "
    "turns, 82,370 overlapping; DD 49,189 / 89,862), and its 67,312 tweets are not public: quotes + reframes "
    "(13,659) stand in."
)


def _table(frame: pd.DataFrame, column: str) -> dict[str, dict[str, int]]:
    counts = frame.groupby(["source", column], sort=False).size()
    return {source: {key: int(n) for key, n in counts[source].items()} for source in frame["source"].unique()}


def compute_stats(
    conversations: list[Conversation],
    trajectories: datasets.DatasetDict,
    reports: list[ReadReport],
    seconds: tuple[float, float],
    config: DataConfig,
) -> dict:
    """`seconds`: (wall, CPU) time of the build; the machine may be shared, so both are kept."""
    frame = pd.concat(
        [trajectories[split].select_columns(["source", "split", "conv_id", "bucket", "emotion"]).to_pandas()
         for split in trajectories],
        ignore_index=True,
    )
    read = pd.DataFrame([(c.source, c.split) for c in conversations], columns=["source", "split"])
    per_source = frame["source"].value_counts()
    ours = {source: int(per_source.get(source, 0)) for source in ("empatheticdialogues", "dailydialog")}
    ours["tweets"] = int(per_source.get("quotes", 0) + per_source.get("reframes", 0))
    return {
        "config": dataclasses.asdict(config),
        "build_seconds": round(seconds[0], 2),
        "build_cpu_seconds": round(seconds[1], 2),
        "total": len(frame),
        "trajectories": _table(frame, "split"),
        "conversations": _table(read, "split"),
        "without_trajectory": {
            source: len({c.conv_id for c in conversations if c.source == source})
            - frame.loc[frame["source"] == source, "conv_id"].nunique()
            for source in config.sources
        },
        "buckets": _table(frame, "bucket"),
        "emotions": _table(frame.assign(emotion=frame["emotion"].replace("", "(none)")), "emotion"),
        "reads": [report.to_dict() for report in reports],
        "paper": {name: {"ours": ours[name], "paper": PAPER_COUNTS[name]} for name in PAPER_COUNTS},
        "paper_note": PAPER_NOTE,
    }


def measure(config: DataConfig) -> tuple[dict, list[ReadReport]]:
    """Build from the raw files (no cache) and count; the time is what a cold build costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    conversations, reports = read_conversations(config)
    trajectories = to_dataset_dict(conversations, config.overlapping)
    seconds = (time.perf_counter() - wall, time.process_time() - cpu)
    return compute_stats(conversations, trajectories, reports, seconds, config), reports


def _grid(table: dict[str, dict[str, int]], columns: list[str] | None = None) -> str:
    frame = pd.DataFrame(table).T.fillna(0).astype(int)
    if columns:
        frame = frame.reindex(columns=[c for c in columns if c in frame.columns])
    frame.loc["total"] = frame.sum()
    return frame.to_string()


def format_stats(stats: dict, reports: list[ReadReport]) -> str:
    config = stats["config"]
    mode = "overlapping" if config["overlapping"] else "non-overlapping"
    emotions = pd.Series({(s, e): n for s, by in stats["emotions"].items() for e, n in by.items()})
    paper = pd.DataFrame(stats["paper"]).T
    return "\n\n".join(
        [
            f"{stats['total']:,} expert trajectories ({mode} turns, {config['split_mode']} splits), "
            f"built in {stats['build_seconds']:.2f} s ({stats['build_cpu_seconds']:.2f} s of CPU)",
            "trajectories (source x split)\n" + _grid(stats["trajectories"], ["train", "valid", "test"]),
            "conversations (source x split)\n" + _grid(stats["conversations"], ["train", "valid", "test"])
            + "\nconversations too short for a turn: "
            + ", ".join(f"{source} {n:,}" for source, n in stats["without_trajectory"].items()),
            "turn buckets\n" + _grid(stats["buckets"], ["1", "2", "3+"]),
            "emotions (trajectories)\n" + emotions.unstack(0).fillna(0).astype(int).to_string(),
            "read reports\n" + "\n".join(report.summary() for report in reports),
            "ours vs the method paper\n" + paper.to_string() + "\n" + stats["paper_note"],
        ]
    )
