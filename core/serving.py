"""Concurrent requests answered together: a reply asked for while others are being written waits for that batch to
end and joins the next one, a row per request, each row with its own adapter on the shared base.

    batcher = ReplyBatcher(max_batch=8)
    for text in batcher.stream(responder, history, prompt, decoding):  # from any number of threads at once
        show(text)

A decoding step for several rows costs less than those rows one by one, so waiting visitors are served sooner than
in turn, and a request is answered as soon as its own row ends. Rows share one call's sampling settings, so only
requests that agree on them are batched; a request with a seed is answered alone (its reply must not depend on who
else asked), as is every model that is not an adapter on a shared base.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from core.models.generator import Context, Decoding
from core.registry import CausalLMResponder, Responder, SharedBase

_DONE = object()


@dataclass(eq=False)  # a request is itself, whatever it asks
class _Request:
    responder: CausalLMResponder
    context: Context
    decoding: Decoding
    steps: queue.Queue = field(default_factory=queue.Queue)

    def key(self) -> tuple:
        """Requests with equal keys can share a call."""
        return id(self.responder.shared), replace(self.decoding, seed=None)


class ReplyBatcher:
    """Streams replies, batching the requests that wait at the same time (at most `max_batch` per call)."""

    def __init__(self, max_batch: int = 8):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self._pending: list[_Request] = []
        self._arrived = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # every call's rows, for benchmarks

    def stream(self, responder: Responder, history: Sequence[str], prompt: str, decoding: Decoding) -> Iterator[str]:
        """The reply as it is written, as `responder.stream` gives it, from a batch when others wait too."""
        if self.max_batch == 1 or decoding.seed is not None or getattr(responder, "shared", None) is None:
            yield from responder.stream(history, prompt, decoding)
            return
        request = _Request(responder, (history, prompt), decoding)
        with self._arrived:
            self._pending.append(request)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="reply-batcher", daemon=True)
                self._worker.start()
            self._arrived.notify()
        for item in iter(request.steps.get, _DONE):
            if isinstance(item, BaseException):
                raise item
            yield item

    def _next_batch(self) -> list[_Request]:
        """The oldest waiting request and those that can share its call, in the order they came."""
        with self._arrived:
            while not self._pending:
                self._arrived.wait()
            key = self._pending[0].key()
            batch = [r for r in self._pending if r.key() == key][:self.max_batch]
            self._pending = [r for r in self._pending if r not in batch]
            return batch

    def _work(self) -> None:
        while True:
            self._write(self._next_batch())

    def _write(self, batch: list[_Request]) -> None:
        """One batched call; a request whose row has ended is answered without waiting for the others."""
        self.batch_sizes.append(len(batch))
        shared: SharedBase = batch[0].responder.shared
        done = [False] * len(batch)
        try:
            for texts in shared.stream_mixed([r.responder.adapter for r in batch], [r.context for r in batch],
                                             batch[0].decoding):
                ended = getattr(texts, "ended", None)  # the last item, the call's own result, has no flags
                for row, (request, text) in enumerate(zip(batch, texts)):
                    if not done[row]:
                        request.steps.put(text)
                        if ended is not None and ended[row]:
                            request.steps.put(_DONE)
                            done[row] = True
        except Exception as error:  # every request of the failed call still waiting hears why
            for row, request in enumerate(batch):
                if not done[row]:
                    request.steps.put(error)
        for row, request in enumerate(batch):
            if not done[row]:
                request.steps.put(_DONE)
