"""Directories written atomically: into a temporary sibling, flushed to disk, then renamed into place, so a crash or
a full disk never leaves a half-written directory under the final name. What a killed writer left behind (its
temporary directory) is tidied by the next write of the same directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary directory to `final`, replacing an older one of the same name."""
    _fsync_tree(tmp)
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    try:
        tmp.rename(final)
    except OSError:
        if old.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _recover(final: Path) -> None:
    """Tidy what a process killed while writing `final` left beside it: its temporary directory goes, and an older
    `final` it had moved aside but not yet replaced is put back (or dropped, when a newer `final` is in place)."""
    for leftover in sorted(final.parent.iterdir()):
        kind, _, pid = leftover.name.partition(f"-{final.name}-")
        if kind not in (".tmp", ".old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == ".old" and not final.exists():
            leftover.rename(final)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def write_directory(final: Path, write: Callable[[Path], Any]) -> Path:
    """Run `write(tmp)` on a fresh temporary directory beside `final`, then publish it as `final` (replacing an
    older one). On any error the temporary directory is removed and `final` is left as it was."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover(final)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
