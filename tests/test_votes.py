"""The arena's votes: Bradley-Terry against hand-computed cases, intervals, versions kept apart, appends that lose
nothing under concurrent voters, merging without duplicates, and the report."""

import json
import math
import threading

import numpy as np
import pytest

from core.__main__ import main as cli
from core.scoring import votes


def vote(a, b, outcome, version_a="v1", version_b="v1", session=""):
    return votes.new_vote([], "I lost my job.", [a, b], [version_a, version_b], ["reply a", "reply b"], outcome,
                          {"temperature": 0.9}, session)


def test_two_models_rate_as_their_win_ratio():
    # A wins 3 of 4: the maximum-likelihood strengths are 3 : 1, 400 log10(3) = 190.8 Elo points apart.
    strengths = votes.bradley_terry([(0, 1)] * 4, [1, 1, 1, 0], 2, prior=0)
    assert strengths[0] / strengths[1] == pytest.approx(3.0, rel=1e-6)
    table = votes.ratings([vote("A", "B", "a")] * 3 + [vote("B", "A", "a")], bootstrap=0).set_index("model")
    # The prior, half a tie (a quarter win to each side), moves it to 3.25 : 1.25.
    assert table.loc["A", "rating"] - table.loc["B", "rating"] == pytest.approx(400 * math.log10(3.25 / 1.25), abs=0.2)
    assert table.loc["A", "won"] == 3 and table.loc["A", "lost"] == 1


def test_three_models_meet_the_likelihood_equations():
    # Each model's points equal its expected points under the fitted strengths (the maximum-likelihood condition),
    # a tie counting half to each side.
    games = [(0, 1), (0, 1), (0, 1), (1, 2), (1, 2), (0, 2), (2, 0), (1, 0)]
    scores = [1, 1, 0.5, 1, 0, 1, 1, 1]
    p = votes.bradley_terry(games, scores, 3, prior=0)
    points, expected = np.zeros(3), np.zeros(3)
    for (i, j), score in zip(games, scores):
        points[i] += score
        points[j] += 1 - score
        expected[i] += p[i] / (p[i] + p[j])
        expected[j] += p[j] / (p[i] + p[j])
    assert expected == pytest.approx(points, abs=1e-6) and np.exp(np.log(p).mean()) == pytest.approx(1.0)
    cycle = votes.bradley_terry([(0, 1), (1, 2), (2, 0)], [1, 1, 1], 3, prior=0)
    assert cycle == pytest.approx(np.ones(3))


def test_ratings_have_intervals_and_keep_model_versions_apart():
    recorded = [vote("mle", "empathygail", "b", "old", "new")] * 6 + [vote("mle", "empathygail", "a", "new", "new")] * 2
    recorded += [vote("empathygail", "mle", "tie", "new", "old"), vote("mle", "expert", "both_bad", "new", "data")]
    table = votes.ratings(recorded, bootstrap=200).set_index("model")
    assert set(table.index) == {"mle@old", "mle@new", "empathygail", "expert"}
    assert (table["low"] <= table["rating"]).all() and (table["rating"] <= table["high"]).all()
    assert table["rating"].mean() == pytest.approx(1000, abs=0.2)
    assert table.loc["empathygail", "rating"] > table.loc["mle@old", "rating"]
    matrix = votes.win_matrix(recorded)
    assert matrix.loc["empathygail", "mle@old"] == pytest.approx(6.5 / 7, abs=1e-3)
    assert matrix.loc["mle@new", "expert"] == 0.5 and math.isnan(matrix.loc["expert", "mle@old"])
    with pytest.raises(ValueError, match="outcome"):
        vote("a", "b", "maybe")


def test_concurrent_voters_lose_no_vote(tmp_path):
    path = tmp_path / "arena.jsonl"
    cast = [[vote("A", "B", "ab"[(i + k) % 2]) for k in range(25)] for i in range(16)]

    def voter(mine):
        for one in mine:
            votes.append_votes(path, [one])

    threads = [threading.Thread(target=voter, args=(mine,)) for mine in cast]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = votes.read_votes(path)
    assert len(stored) == 400 and {v["id"] for v in stored} == {v["id"] for mine in cast for v in mine}


def test_merging_adds_each_vote_once_and_skips_what_is_broken(tmp_path):
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    shared = [vote("A", "B", "a", session="s1"), vote("B", "C", "tie", session="s1")]
    votes.append_votes(here, shared[:1])
    assert votes.merge_votes(here, [*shared, {"id": "x"}, None]) == (1, 3)
    assert votes.merge_votes(here, shared) == (0, 2)
    with there.open("w") as file:  # a line cut short by a crash is skipped, the rest read
        file.write(json.dumps(shared[0]) + "\n" + json.dumps(shared[1])[:40])
    assert [v["id"] for v in votes.read_votes(there)] == [shared[0]["id"]]
    assert len(votes.read_votes(here)) == 2


def test_the_report_command_writes_ratings_a_matrix_and_a_plot(tmp_path, capsys):
    path = tmp_path / "arena.jsonl"
    votes.append_votes(path, [vote("A", "B", "a"), vote("B", "C", "b"), vote("A", "C", "tie")])
    exported = tmp_path / "exported.jsonl"
    votes.append_votes(exported, [vote("C", "A", "both_bad")])
    assert cli(["votes", "merge", str(exported), "--votes", str(path)]) == 0
    assert cli(["votes", "report", "--votes", str(path), "--out", str(tmp_path / "out"), "--bootstrap", "50"]) == 0
    out = tmp_path / "out"
    assert "4 blind votes" in (out / "ratings.md").read_text() and (out / "ratings.png").stat().st_size > 1000
    assert set(open(out / "ratings.csv").readline().strip().split(",")) >= {"model", "rating", "low", "high"}
    assert "1 votes added" in capsys.readouterr().out
    assert cli(["votes", "report", "--votes", str(tmp_path / "none.jsonl")]) == 2
