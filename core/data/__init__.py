"""Raw dialogue files -> conversations -> expert trajectories (see docs/data.md)."""

from core.data.records import BUCKETS, SPLITS, Conversation, ReadReport, Utterance, bucket
from core.data.trajectories import (
    DD_EMOTIONS,
    ED_EMOTIONS,
    SOURCES,
    DataConfig,
    build_trajectories,
    load_trajectories,
    read_conversations,
    seeded_subset,
)

__all__ = [
    "BUCKETS",
    "DD_EMOTIONS",
    "ED_EMOTIONS",
    "SOURCES",
    "SPLITS",
    "Conversation",
    "DataConfig",
    "ReadReport",
    "Utterance",
    "bucket",
    "build_trajectories",
    "load_trajectories",
    "read_conversations",
    "seeded_subset",
]
