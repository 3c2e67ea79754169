"""Turning (history, prompt[, response]) into model input, and the tokenizers that do it.

A model input reads

    <|user|> h1 <|bot|> h2 <|user|> prompt <|bot|> response <|endoftext|>

with tags alternating backwards from the prompt, so the replying side is always `<|bot|>`: in a chat the user's
messages are `<|user|>` and the model's own earlier replies `<|bot|>`, exactly as in the expert trajectories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerBase, PreTrainedTokenizerFast

USER = "<|user|>"
BOT = "<|bot|>"
EOS = "<|endoftext|>"
SPEAKER_TAGS = [USER, BOT]


@dataclass
class Encoded:
    input_ids: list[int]
    response_start: int  # input_ids[response_start:] are the response and its end token
    truncated: bool  # history dropped or prompt cut to fit


def _with_specials(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add the speaker tags as special tokens (never split, never merged) and a pad token."""
    missing = [t for t in SPEAKER_TAGS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": EOS})
    if tokenizer.pad_token is None:
        # GPT-2 has no pad token; padding positions are masked out, so reusing the end token is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer saved with `save_pretrained`, a hub name such as `gpt2`, or a folder with GPT-2's raw
    `encoder.json` + `vocab.bpe` (as in ../shared/data/gpt2_tokenizer)."""
    path = Path(name_or_path)
    if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
        tokenizer = GPT2TokenizerFast(vocab=str(path / "encoder.json"), merges=str(path / "vocab.bpe"))
    elif path.exists() and not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer in {path}: expected tokenizer.json (save_pretrained) "
                                "or GPT-2's encoder.json + vocab.bpe")
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    return _with_specials(tokenizer)


# The shipped BPE's size: 4k rather than 8k leaves room in checkpoints/ (64 MiB for four GPT-2 models) for wider
# layers, and perplexity per word does not depend on the vocabulary.
VOCAB_SIZE = 4096


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE, min_frequency: int = 2
                    ) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2's scheme) trained on `texts`: the offline stand-in for GPT-2's own vocabulary."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator((_spaced(t) for t in texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=[EOS, *SPEAKER_TAGS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS,
                                        unk_token=EOS, additional_special_tokens=SPEAKER_TAGS)
    return _with_specials(tokenizer)


def _spaced(text: str) -> str:
    # A leading space makes every utterance start as a word does mid-sentence in byte-level BPE.
    return " " + " ".join(text.split())


def text_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as it reads inside a model input, in one batched (parallel) tokenizer call."""
    if not texts:
        return []
    return tokenizer([_spaced(t) for t in texts], add_special_tokens=False)["input_ids"]


def reply_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    """A generated reply's text. A byte-level BPE can stop mid-character; those bytes are dropped rather than
    shown as U+FFFD."""
    return tokenizer.decode(ids, skip_special_tokens=True).replace("\ufffd", "").strip()


def encode(tokenizer: PreTrainedTokenizerBase, history: Sequence[str], prompt: str, response: str | None = None,
           max_length: int = 256, max_response_tokens: int | None = None) -> Encoded:
    """Token ids for one (history, prompt[, response]); see the module docstring for the layout.

    The oldest history utterances are dropped first; the prompt is cut (from its start) only when it cannot fit
    alone. Without a response the ids end with `<|bot|>`, ready for generation.
    """
    return encode_batch(tokenizer, [(history, prompt, response)], max_length, max_response_tokens)[0]


def encode_batch(tokenizer: PreTrainedTokenizerBase, examples: Sequence[tuple[Sequence[str], str, str | None]],
                 max_length: int = 256, max_response_tokens: int | None = None) -> list[Encoded]:
    """`encode` for many (history, prompt, response-or-None); each distinct utterance is tokenized once, in one
    batched call, which makes a whole training split take seconds rather than minutes."""
    texts = list(dict.fromkeys(t for history, prompt, response in examples
                               for t in [*history, prompt, *([] if response is None else [response])]))
    ids = dict(zip(texts, text_ids(tokenizer, texts)))
    return [_assemble(tokenizer, [ids[h] for h in history], ids[prompt], None if response is None else ids[response],
                      max_length, max_response_tokens) for history, prompt, response in examples]


def _assemble(tokenizer: PreTrainedTokenizerBase, history: Sequence[list[int]], prompt: list[int],
              response: list[int] | None, max_length: int, max_response_tokens: int | None) -> Encoded:
    user, bot = tokenizer.convert_tokens_to_ids(SPEAKER_TAGS)
    response_ids: list[int] = []
    if response is not None:
        response_ids = response + [tokenizer.eos_token_id]
        if max_response_tokens is not None:
            response_ids = response_ids[:max_response_tokens]
    budget = max_length - len(response_ids) - 1  # the <|bot|> tag that opens the response
    if budget < 2:
        raise ValueError(f"max_length {max_length} leaves no room for a prompt beside {len(response_ids)} response tokens")

    prompt_ids = [user] + prompt
    truncated = len(prompt_ids) > budget
    if truncated:
        prompt_ids = [user] + prompt_ids[len(prompt_ids) - budget + 1:]
    context = prompt_ids
    tags = [bot, user]  # history[-1] is the bot's side, history[-2] the user's, ...
    for back, utterance in enumerate(reversed(history)):
        segment = [tags[back % 2]] + utterance
        if len(context) + len(segment) > budget:
            truncated = True
            break
        context = segment + context
    context = context + [bot]
    return Encoded(input_ids=context + response_ids, response_start=len(context), truncated=truncated)


def collate(batch: Sequence[Encoded], pad_id: int, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """Pad a batch: right padding for training and scoring, left padding for generation.

    `response_mask` is 1 on response tokens; next-token losses and log-probabilities read it shifted by one.
    """
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    response_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        start = width - n if left_pad else 0
        input_ids[row, start:start + n] = torch.tensor(e.input_ids)
        attention_mask[row, start:start + n] = 1
        response_mask[row, start + e.response_start:start + n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}
