"""Every model call of a process on one long-lived thread.

    @on_model_thread
    def respond_batch(self, contexts, decoding): ...   # runs on the model thread, whichever thread calls it

On CPU, bfloat16 matrix products run markedly slower in a thread that has not run them before, and slower again
when two threads take turns with one model (README, Serving). So streamed replies, whole replies and scores all run
on the same thread; a call made on that thread itself runs at once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_here = threading.local()
MODEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model",
                                  initializer=lambda: setattr(_here, "model_thread", True))


def is_model_thread() -> bool:
    return getattr(_here, "model_thread", False)


def on_model_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run on the model thread; the caller waits for its result (or its exception)."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if is_model_thread():
            return fn(*args, **kwargs)
        return MODEL_THREAD.submit(fn, *args, **kwargs).result()
    return run


def start_on_model_thread(fn: Callable[[], R]) -> Future:
    """`fn` started on the model thread without waiting, for a reader on another thread to follow."""
    if is_model_thread():
        raise RuntimeError("a stream started on the model thread would wait for itself: read it from another thread")
    return MODEL_THREAD.submit(fn)
