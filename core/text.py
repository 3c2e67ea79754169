"""Turning (history, prompt[, response]) into model input, and the tokenizers that do it.

A model input alternates backwards from the prompt, so the replying side is always the model's: in a chat the
person's messages are the user's turns and the model's own earlier replies its turns, exactly as in the expert
trajectories. Two layouts, chosen by the tokenizer:

- speaker tags, for GPT-2 tokenizers (the from-scratch models):
      <|user|> h1 <|bot|> h2 <|user|> prompt <|bot|> response <|endoftext|>
- the base's own ChatML chat template, for a tokenizer that has one (SmolLM2), with one fixed system prompt:
      <|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nh1<|im_end|>\n<|im_start|>assistant\nh2
      <|im_end|>\n<|im_start|>user\nprompt<|im_end|>\n<|im_start|>assistant\nresponse<|im_end|>
  which is token for token what `apply_chat_template` writes, so no embedding needs training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerBase, PreTrainedTokenizerFast

USER = "<|user|>"
BOT = "<|bot|>"
EOS = "<|endoftext|>"
SPEAKER_TAGS = [USER, BOT]
Context = tuple[Sequence[str], str]  # (history, prompt)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# One system prompt for training, scoring and serving: without one the template puts in "You are a helpful AI
# assistant named SmolLM", which pulls the base towards assistant talk.
SYSTEM_PROMPT = "You are a caring friend. Reply briefly and kindly."


@dataclass
class Encoded:
    input_ids: list[int]
    response_start: int  # input_ids[response_start:] are the response and its end token
    truncated: bool  # history dropped or prompt cut to fit


def is_chat(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's model reads the ChatML layout (its own chat template) rather than speaker tags."""
    return IM_START in tokenizer.get_vocab() and IM_END in tokenizer.get_vocab()


@dataclass(frozen=True)
class Layout:
    """The token ids around each part of a model input."""

    opening: list[int]  # before everything (the system turn)
    user: tuple[list[int], list[int]]  # before and after one of the person's utterances
    bot: tuple[list[int], list[int]]  # before and after one of the model's earlier replies
    stops: list[int]  # a reply ends at the first of these (the first is the end token, part of the action)
    spaced: bool  # utterances read with a leading space (byte-level BPE mid-text) rather than after a newline


def layout(tokenizer: PreTrainedTokenizerBase) -> Layout:
    if not is_chat(tokenizer):
        user, bot = tokenizer.convert_tokens_to_ids(SPEAKER_TAGS)
        # The model may also end its reply by starting the user's next turn.
        return Layout([], ([user], []), ([bot], []), [tokenizer.eos_token_id, user], spaced=True)
    start, end = tokenizer.convert_tokens_to_ids([IM_START, IM_END])

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    newline = ids("\n")
    return Layout([start, *ids("system\n" + SYSTEM_PROMPT), end, *newline],
                  ([start, *ids("user\n")], [end, *newline]), ([start, *ids("assistant\n")], [end, *newline]),
                  [end, start, *([tokenizer.unk_token_id] if tokenizer.unk_token_id is not None else [])],
                  spaced=False)


def _with_specials(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add the speaker tags as special tokens (never split, never merged) and a pad token; a chat tokenizer
    keeps its own vocabulary."""
    if is_chat(tokenizer):
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


# Written by from_pretrained from how a tokenizer was loaded, not from what it is: the base converted offline and an
# adapter saved from it differ in local_files_only alone.
LOADING_KEYS = ("local_files_only", "is_local", "name_or_path")


def _tokenizer_file(folder: str | Path, name: str) -> bytes | dict | None:
    file = Path(folder, name)
    if not file.is_file():
        return None
    if name == "tokenizer_config.json":
        return {key: value for key, value in json.loads(file.read_text()).items() if key not in LOADING_KEYS}
    return file.read_bytes()


def same_tokenizer(a: str | Path, b: str | Path) -> bool:
    """Whether two folders saved the same tokenizer (equal files, loading flags aside), so that one loaded copy can
    serve both."""
    if not (Path(a, "tokenizer.json").is_file() and Path(b, "tokenizer.json").is_file()):
        return False
    return all(_tokenizer_file(a, name) == _tokenizer_file(b, name) for name in TOKENIZER_FILES)


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


def text_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], spaced: bool = True) -> list[list[int]]:
    """Token ids of each text as it reads inside a model input, in one batched (parallel) tokenizer call."""
    if not texts:
        return []
    clean = [_spaced(t) if spaced else " ".join(t.split()) for t in texts]
    return tokenizer(clean, add_special_tokens=False)["input_ids"]


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
    form = layout(tokenizer)
    texts = list(dict.fromkeys(t for history, prompt, response in examples
                               for t in [*history, prompt, *([] if response is None else [response])]))
    ids = dict(zip(texts, text_ids(tokenizer, texts, form.spaced)))
    return [_assemble(form, [ids[h] for h in history], ids[prompt], None if response is None else ids[response],
                      max_length, max_response_tokens) for history, prompt, response in examples]


def _assemble(form: Layout, history: Sequence[list[int]], prompt: list[int], response: list[int] | None,
              max_length: int, max_response_tokens: int | None) -> Encoded:
    response_ids: list[int] = []
    if response is not None:
        response_ids = response + form.stops[:1]
        if max_response_tokens is not None:
            response_ids = response_ids[:max_response_tokens]
    opening, (user_before, user_after), (bot_before, _) = form.opening, form.user, form.bot
    budget = max_length - len(response_ids) - len(bot_before) - len(opening)  # what opens the response and input
    if budget < len(user_before) + len(user_after) + 1:
        raise ValueError(f"max_length {max_length} leaves no room for a prompt beside {len(response_ids)} response "
                         "tokens")

    room = budget - len(user_before) - len(user_after)
    truncated = len(prompt) > room
    context = user_before + prompt[len(prompt) - room:] + user_after if truncated else \
        user_before + prompt + user_after
    sides = [form.bot, form.user]  # history[-1] is the model's side, history[-2] the user's, ...
    for back, utterance in enumerate(reversed(history)):
        before, after = sides[back % 2]
        segment = before + utterance + after
        if len(context) + len(segment) > budget:
            truncated = True
            break
        context = segment + context
    context = opening + context + bot_before
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
