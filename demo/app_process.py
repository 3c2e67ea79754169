"""The app served on localhost, for the load bench (demo/bench_load.py), the fuzzer (scripts/fuzz.py) and the tests: a
free port, `python app.py` in its own process as it is served, and gradio_client clients to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from core import paths


def free_port() -> int:
    """A localhost port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`python app.py` in its own process on a localhost port; stopped on exit."""

    def __init__(self, checkpoints: Path, data: Path, work: Path, env: dict[str, str], start_timeout: float,
                 max_batch: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = work / "app.log"
        work.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(paths.REPO_ROOT / "app.py"), "--checkpoints-dir", str(checkpoints),
                   "--data-dir", str(data), "--results-dir", str(work / "results"), "--work-dir", str(work),
                   "--host", "127.0.0.1", "--port", str(self.port), "--training", "--max-batch", str(max_batch)]
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(command, cwd=paths.REPO_ROOT, env=env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)
        self._wait(start_timeout)

    def _wait(self, timeout: float) -> None:
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with {self.process.returncode} while starting; see {self.log}:\n"
                                   + self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not answer on {self.url} within {timeout:.0f} s; see {self.log}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)
        self._log_file.close()


def client(url: str):
    """A gradio_client Client that neither downloads files nor reports analytics."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, analytics_enabled=False)
