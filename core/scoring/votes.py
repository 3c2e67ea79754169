"""People's judgements from the blind arena: votes kept one per line, Bradley-Terry ratings with bootstrap
intervals, the pairwise win matrix, and merging exported judgements without duplicates.

A vote compares two replies to one context, shown without the models' names and in random order:

    {"id": "…", "time": "…", "session": "…", "history": […], "prompt": "…", "models": ["mle", "empathygail"],
     "versions": ["<card hash>", "<card hash>"], "replies": ["…", "…"], "decoding": {…}, "outcome": "b"}

`outcome` is "a" or "b" (that reply is better), "tie", or "both_bad". Ratings are those of Chatbot Arena:
Bradley-Terry strengths fitted by maximum likelihood (Hunter's MM algorithm, 2004), a tie or "both bad" counting
half a win to each side, on the Elo scale (400 log10 of the strength, mean 1000), with 95% intervals from
resampling the votes. A model retrained under the same name has another card hash and is rated apart.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OUTCOMES = ("a", "b", "tie", "both_bad")
KEYS = ("id", "time", "session", "history", "prompt", "models", "versions", "replies", "decoding", "outcome")
EXPERT = "expert"  # the person's own reply in the data, rated beside the models in review sessions
PRIOR_TIES = 0.5  # a virtual half tie for every pair that met, so that a model with no win yet has a finite rating
_append_lock = threading.Lock()


def new_vote(history: Sequence[str], prompt: str, models: Sequence[str], versions: Sequence[str],
             replies: Sequence[str], outcome: str, decoding: dict[str, Any] | None = None, session: str = "") -> dict:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
    if len(models) != 2 or len(versions) != 2 or len(replies) != 2 or models[0] == models[1]:
        raise ValueError("a vote compares two different models' replies")
    return {"id": uuid.uuid4().hex, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "session": session,
            "history": list(history), "prompt": prompt, "models": list(models), "versions": list(versions),
            "replies": list(replies), "decoding": decoding or {}, "outcome": outcome}


def is_vote(record: Any) -> bool:
    return (isinstance(record, dict) and all(k in record for k in KEYS) and record["outcome"] in OUTCOMES
            and all(isinstance(record[k], list) and len(record[k]) == 2 for k in ("models", "versions", "replies")))


def append_votes(path: str | Path, votes: Iterable[dict]) -> None:
    """Add votes to the file, each as one line written in one call to a file opened for appending, so that
    concurrent voters (threads or processes) never interleave or lose a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in votes).encode()
    with _append_lock:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _records(text: str) -> list[Any]:
    """Each line's JSON value; None where a line is not JSON (cut short by a crash, or anything else)."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append(None)
    return records


def read_votes(path: str | Path) -> list[dict]:
    """Every well-formed vote in the file (a line cut short by a crash, or anything else, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [r for r in _records(path.read_text(encoding="utf-8", errors="replace")) if is_vote(r)]


def merge_votes(path: str | Path, incoming: Iterable[dict]) -> tuple[int, int]:
    """Append the votes not already in the file (by id); returns (added, skipped as duplicates or malformed)."""
    with _append_lock:
        known = {v["id"] for v in read_votes(path)}
    new, skipped = [], 0
    for vote in incoming:
        if is_vote(vote) and vote["id"] not in known:
            known.add(vote["id"])
            new.append(vote)
        else:
            skipped += 1
    append_votes(path, new)
    return len(new), skipped


def merge_file(path: str | Path, exported: str | Path) -> tuple[int, int]:
    """`merge_votes` for an exported file; a line that is not JSON counts as skipped."""
    return merge_votes(path, _records(Path(exported).read_text(encoding="utf-8")))


def players(votes: Sequence[dict]) -> list[tuple[str, str]]:
    """Each vote's two sides as shown in ratings: the model's name, with its version where a name has several."""
    versions: dict[str, set[str]] = {}
    for vote in votes:
        for name, version in zip(vote["models"], vote["versions"]):
            versions.setdefault(name, set()).add(version)

    def label(name: str, version: str) -> str:
        return name if len(versions[name]) == 1 else f"{name}@{version[:8]}"

    return [(label(v["models"][0], v["versions"][0]), label(v["models"][1], v["versions"][1])) for v in votes]


def _scores(votes: Sequence[dict]) -> list[float]:
    """The first side's share of each vote: 1 a win, 0 a loss, 1/2 a tie or both bad."""
    return [{"a": 1.0, "b": 0.0}.get(v["outcome"], 0.5) for v in votes]


def bradley_terry(pairs: Sequence[tuple[int, int]], scores: Sequence[float], n: int, prior: float = PRIOR_TIES,
                  iterations: int = 10_000, tolerance: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood strengths (geometric mean 1) of n players from games (i, j) in which i scored
    `scores[k]` (ties count a half), by the MM update p_i <- W_i / sum_j n_ij / (p_i + p_j)."""
    wins, games = np.zeros(n), np.zeros((n, n))
    for (i, j), score in zip(pairs, scores):
        wins[i] += score
        wins[j] += 1 - score
        games[i, j] += 1
        games[j, i] += 1
    met = games > 0
    games = games + prior * met
    wins = wins + prior / 2 * met.sum(axis=1)
    strengths = np.ones(n)
    for _ in range(iterations):
        updated = wins / np.maximum((games / (strengths[:, None] + strengths[None, :])).sum(axis=1), 1e-300)
        updated = np.where(met.any(axis=1), updated, 1.0)
        positive = updated[updated > 0]
        updated = updated / math.exp(np.log(positive).mean()) if len(positive) else updated
        if np.abs(updated - strengths).max() < tolerance:
            return updated
        strengths = updated
    return strengths


def elo(strengths: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        points = 400 * np.log10(strengths)
    finite = points[np.isfinite(points)]
    return points - (finite.mean() if len(finite) else 0) + 1000


def ratings(votes: Sequence[dict], bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model: Elo-scale rating, its 95% bootstrap interval, and its votes (won, tied or both bad, lost)."""
    columns = ["model", "rating", "low", "high", "votes", "won", "tied", "lost"]
    if not votes:
        return pd.DataFrame(columns=columns)
    sides = players(votes)
    names = sorted({name for pair in sides for name in pair})
    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[a], index[b]) for a, b in sides]
    scores = _scores(votes)
    rating = elo(bradley_terry(pairs, scores, len(names)))
    rng = np.random.default_rng(seed)
    resampled = [elo(bradley_terry([pairs[k] for k in pick], [scores[k] for k in pick], len(names),
                                   iterations=500, tolerance=1e-6))
                 for pick in (rng.integers(0, len(pairs), len(pairs)) for _ in range(bootstrap))]
    low, high = np.nanpercentile(np.array(resampled), [2.5, 97.5], axis=0) if resampled \
        else np.full((2, len(names)), np.nan)
    rows = []
    for i, name in enumerate(names):
        won = tied = played = 0
        for (a, b), score in zip(sides, scores):
            if name in (a, b):
                mine = score if a == name else 1 - score
                played, won, tied = played + 1, won + (mine == 1), tied + (mine == 0.5)
        rows.append((name, round(rating[i], 1), round(low[i], 1), round(high[i], 1), played, won, tied,
                     played - won - tied))
    return pd.DataFrame(rows, columns=columns).sort_values("rating", ascending=False, ignore_index=True)


def win_matrix(votes: Sequence[dict]) -> pd.DataFrame:
    """Row model's share of points against the column model (a tie or both bad is half a point); empty where the
    two never met."""
    sides, scores = players(votes), _scores(votes)
    names = sorted({name for pair in sides for name in pair})
    points = pd.DataFrame(0.0, index=names, columns=names)
    games = pd.DataFrame(0.0, index=names, columns=names)
    for (a, b), score in zip(sides, scores):
        points.loc[a, b] += score
        points.loc[b, a] += 1 - score
        games.loc[a, b] += 1
        games.loc[b, a] += 1
    return (points / games.where(games > 0)).round(3)


def report(votes_path: str | Path, out: str | Path, bootstrap: int = 1000) -> list[Path]:
    """ratings.md (ratings and win matrix), ratings.csv, win_matrix.csv and ratings.png in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    votes = read_votes(votes_path)
    if not votes:
        raise ValueError(f"no votes in {votes_path}: vote in the app's Arena tab first")
    table, matrix = ratings(votes, bootstrap), win_matrix(votes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "ratings.md", out / "ratings.csv", out / "win_matrix.csv", out / "ratings.png"]
    table.to_csv(files[1], index=False)
    matrix.to_csv(files[2])
    outcomes = pd.Series([v["outcome"] for v in votes]).value_counts()
    files[0].write_text(
        f"# Arena ratings\n\n{len(votes)} blind votes ({', '.join(f'{k} {n}' for k, n in outcomes.items())}); "
        f"Bradley-Terry on the Elo scale (mean 1000), 95% intervals from {bootstrap} bootstrap resamples of the "
        f"votes.\n\n{table.to_markdown(index=False)}\n\n## Win matrix\n\nThe row model's share of points against "
        f"the column model (a tie or both bad is half).\n\n{matrix.to_markdown()}\n")
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(table) + 1.5))
    ordered = table.iloc[::-1]
    axis.errorbar(ordered["rating"], range(len(ordered)), fmt="o",
                  xerr=[ordered["rating"] - ordered["low"], ordered["high"] - ordered["rating"]], capsize=4)
    axis.set_yticks(range(len(ordered)), ordered["model"])
    axis.set_xlabel("rating (Elo scale, 95% interval)")
    axis.set_title(f"Arena ratings from {len(votes)} blind votes")
    figure.tight_layout()
    figure.savefig(files[3], dpi=120)
    plt.close(figure)
    return files
