"""What the readers must report on the tiny data directory (demo/tiny_world.py writes it): the broken rows each file
adds, counted by the reason the ReadReport gives."""

# ED train, in either dialect (the shared copy's and the official release's).
ED_SKIPS = {
    "wrong column count": 1,
    "non-integer utterance_idx": 1,
    "empty utterance": 1,
    "bad encoding (not UTF-8)": 1,
}
DD_SKIPS = {"non-integer label": 1, "label out of range": 1, "empty utterance": 1}  # tiny_world.DD_BROKEN
QUOTE_SKIPS = {"invalid JSON": 1, "no text": 1}
REFRAME_SKIPS = {"wrong column count": 1, "empty text": 1}
