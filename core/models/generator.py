"""The generator: a causal language model (GPT-2 by default), batched sampling and response log-probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase

from core.text import USER, Encoded, collate, encode_batch, reply_text

Context = tuple[Sequence[str], str]  # (history, prompt)


@dataclass
class GeneratorConfig:
    name_or_path: str | None = None  # hub name (`gpt2`) or local dir; None builds a fresh GPT-2 from the fields below
    n_layer: int = 6
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.1
    layer_norm_epsilon: float = 1e-5


@dataclass
class Decoding:
    """Sampling settings; the defaults are TextGAIL's (top-p 0.9, temperature 0.9, at most 50 new tokens)."""

    do_sample: bool = True
    temperature: float = 0.9
    top_p: float = 0.9
    max_new_tokens: int = 50
    seed: int | None = None
    cache_implementation: str | None = None  # "static" preallocates the KV cache: faster rollouts on a GPU


@dataclass
class Generation:
    texts: list[str]
    sequences: list[Encoded]  # context + generated tokens (through the end token when one was produced)
    context_truncated: list[bool]


def build_generator(config: GeneratorConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Load a pretrained causal LM, or build a fresh GPT-2 of the configured size; the embedding matrix is
    resized to the tokenizer, which may have gained the speaker tags."""
    if config.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(config.name_or_path, dtype=torch.float32)
    else:
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
            n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, layer_norm_epsilon=config.layer_norm_epsilon,
            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    if model.get_input_embeddings().num_embeddings != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return model


def context_length(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "n_positions", None) or model.config.max_position_embeddings)


def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    # A reply ends at the end token, or where the model starts writing the user's next turn.
    return [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(USER)]


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Context],
             decoding: Decoding = Decoding()) -> Generation:
    """Sample one reply per context in a single batched `generate` call (left padding, KV cache)."""
    room = context_length(model) - decoding.max_new_tokens
    return generate_encoded(model, tokenizer, encode_batch(tokenizer, [(h, p, None) for h, p in contexts], room),
                            decoding)


@torch.no_grad()
def generate_encoded(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encoded: Sequence[Encoded],
                     decoding: Decoding = Decoding()) -> Generation:
    """`generate` for contexts already encoded (each ending with `<|bot|>`), e.g. a rollout's prompts."""
    batch = collate(encoded, tokenizer.pad_token_id, left_pad=True)
    device = model.device
    stop = _stop_ids(tokenizer)
    sampling = dict(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0) \
        if decoding.do_sample else dict(do_sample=False)
    # A seed fixes this call's samples without disturbing the caller's random stream; without one, the global
    # generator advances as usual, so consecutive rollouts differ.
    seeded = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                   enabled=decoding.seed is not None)
    with seeded:
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
        output = model.generate(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=decoding.max_new_tokens, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
            cache_implementation=decoding.cache_implementation, **sampling)
    new_tokens = output[:, batch["input_ids"].shape[1]:].tolist()
    texts, sequences = [], []
    for e, tokens in zip(encoded, new_tokens):
        cut = next((i for i, t in enumerate(tokens) if t in stop), None)
        reply = tokens if cut is None else tokens[:cut]
        # The stop token is part of the action: PPO must learn when to end a reply, not only what to say.
        action = reply + [tokenizer.eos_token_id] if cut is not None else reply
        texts.append(reply_text(tokenizer, reply))
        sequences.append(Encoded(e.input_ids + action, e.response_start, e.truncated))
    return Generation(texts=texts, sequences=sequences, context_truncated=[e.truncated for e in encoded])


def response_logprobs(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor) -> torch.Tensor:
    """log p(token | everything before it) for each response token: [batch, length - 1], zero elsewhere."""
    length = input_ids.shape[1]
    # The LM head (the costliest matrix product at GPT-2 sizes) runs only from the earliest response token on.
    has_response = response_mask.bool().any(dim=1)
    starts = response_mask.float().argmax(dim=1)[has_response]
    first = max(1, int(starts.min()) if len(starts) else length - 1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=length - first + 1).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, input_ids[:, first:, None]).squeeze(-1)
    out = torch.zeros(input_ids.shape[0], length - 1, dtype=logp.dtype, device=logp.device)
    out[:, first - 1:] = logp * response_mask[:, first:]
    return out


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> PreTrainedModel:
    """Weights only from safetensors: a directory with pickle weights is refused by transformers itself.
    Computed in float32 whatever the stored type (shipped weights are float16; CPUs are slow at half precision)."""
    return AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, dtype=torch.float32).to(device).eval()
