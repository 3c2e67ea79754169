"""Replies as they are written: `generate` runs on the model thread and hands each step's tokens to the reader.

    for texts in stream_generation(lambda streamer: run_generate(..., streamer=streamer), tokenizer, rows=2):
        show(texts)  # every row's reply so far; the last item is exactly what the unstreamed call returns

The worker, not the reader, holds whatever lock the model needs: a web server may resume the reading generator on
a different thread at every step, and a lock must be released by the thread that took it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import torch
from transformers import PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from core.models.model_thread import start_on_model_thread
from core.text import layout, reply_text


class Texts(list):
    """Every row's reply so far, and which rows have ended (their text is final)."""

    def __init__(self, texts: list[str], ended: list[bool]):
        super().__init__(texts)
        self.ended = ended


class Cancelled(Exception):
    """Raised inside `generate` (from the streamer) once the reader has stopped reading."""


class TokenQueue(BaseStreamer):
    """What `generate` calls with each decoding step's tokens, one per row; the reader takes them from `steps`."""

    def __init__(self):
        self.steps: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self.cancelled.is_set():
            raise Cancelled
        if not self._prompt_seen:  # generate hands over the prompt first
            self._prompt_seen = True
            return
        self.steps.put(value.reshape(-1).tolist())

    def end(self) -> None:
        """The worker marks the end itself, after generate has returned or failed."""


def stream_generation(run: Callable[[TokenQueue], list[str]], tokenizer: PreTrainedTokenizerBase, rows: int
                      ) -> Iterator[list[str]]:
    """Every row's reply so far after each decoding step of `run(streamer)` (as `Texts`, which say which rows have
    ended), where `run` calls `generate` with the streamer and returns the replies; its own result comes last, so a
    stream ends where the unstreamed call does.
    Closing the iterator early stops the generation at its next step; an error in `run` is raised to the reader."""
    streamer, done, outcome = TokenQueue(), object(), {}

    def work() -> None:
        try:
            outcome["texts"] = run(streamer)
        except Cancelled:
            pass
        except BaseException as error:  # handed to the reader, which raises it in its own thread
            outcome["error"] = error
        finally:
            streamer.steps.put(done)

    worker = start_on_model_thread(work)
    stops = set(layout(tokenizer).stops)
    tokens: list[list[int]] = [[] for _ in range(rows)]
    ended = [False] * rows
    try:
        for step in iter(streamer.steps.get, done):
            for row, token in enumerate(step):
                ended[row] = ended[row] or token in stops
                if not ended[row]:
                    tokens[row].append(token)
            yield Texts([reply_text(tokenizer, ids) for ids in tokens], list(ended))
    finally:
        streamer.cancelled.set()
        worker.result()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["texts"]
