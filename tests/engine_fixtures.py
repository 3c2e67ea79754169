"""Tiny tokenizers, generators and trajectory sets that the engine tests build for themselves."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict

import torch

from core.engine.checkpoint import export_model
from core.models.card import ModelCard, write_base_card
from core.models.generator import GeneratorConfig, LoraSettings, build_generator
from core.text import SYSTEM_PROMPT, train_tokenizer

TINY_GENERATOR = GeneratorConfig(n_layer=2, n_embd=32, n_head=2, n_positions=64, dropout=0.1)

EXCHANGES = [
    ("I lost my job today.", "I am so sorry to hear that."),
    ("My dog died last week.", "I am so sorry for your loss."),
    ("I passed my exam!", "That is wonderful, congratulations!"),
    ("I got a new puppy.", "That is wonderful, what is its name?"),
    ("My car broke down again.", "Oh no, that sounds so frustrating."),
    ("I am nervous about my interview.", "You will do great, just be yourself."),
    ("My sister is visiting tomorrow.", "That sounds lovely, enjoy your time together."),
    ("I could not sleep last night.", "I am sorry, that must be exhausting."),
]


def _rows(split: str, copies: int) -> list[dict]:
    rows = []
    for c in range(copies):
        for i, (prompt, response) in enumerate(EXCHANGES):
            history = [] if i % 2 == 0 else ["Hi there.", "Hello, how are you?"]
            rows.append(dict(source="empatheticdialogues", split=split, conv_id=f"{split}:{c}:{i}",
                             turn=len(history) // 2, bucket="1" if not history else "2", history=history,
                             history_speakers=["speaker", "listener"][:len(history)], prompt_speaker="speaker",
                             response_speaker="listener", prompt=prompt, response=response, emotion="sad",
                             situation=""))
    return rows


def toy_trajectories(copies: int = 4) -> DatasetDict:
    """The columns of `core.data.build_trajectories`, with a handful of fixed exchanges."""
    return DatasetDict({split: Dataset.from_list(_rows(split, n))
                        for split, n in [("train", copies), ("valid", 1), ("test", 1)]})


def toy_tokenizer(directory: Path | None = None):
    texts = [t for pair in EXCHANGES for t in pair] + ["Hi there.", "Hello, how are you?"]
    tokenizer = train_tokenizer(texts * 4, vocab_size=300, min_frequency=1)
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer


def tiny_generator(tokenizer, config: GeneratorConfig = TINY_GENERATOR):
    return build_generator(config, tokenizer)


CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                   "{% endif %}")


def toy_chat_tokenizer():
    """A byte-level BPE with SmolLM2's special tokens and its ChatML template, at toy size."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    texts = [t for pair in EXCHANGES for t in pair] + ["Hi there.", "Hello, how are you?", "system", "user",
                                                       "assistant", SYSTEM_PROMPT]
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts * 4, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>", chat_template=CHATML_TEMPLATE)


def tiny_llama_base(directory: Path) -> Path:
    """A 2-block Llama with a chat tokenizer, saved like the converted base: the stand-in for SmolLM2 in tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = toy_chat_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


TINY_LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
                         top_layers=1)


def adapters_on_tiny_base(root: Path) -> list[Path]:
    """Two exported adapters (random, clearly different) and a zero-shot card on one tiny Llama base."""
    from core.text import load_tokenizer

    base_dir = tiny_llama_base(root / "base")
    tokenizer = load_tokenizer(base_dir)
    paths = []
    for seed, name in enumerate(["one", "two"]):
        torch.manual_seed(seed)
        model = build_generator(GeneratorConfig(name_or_path=str(base_dir), lora=TINY_LORA), tokenizer).eval()
        with torch.no_grad():
            for parameter_name, parameter in model.named_parameters():
                if "lora_B" in parameter_name:
                    parameter.normal_(0, 0.5)
        paths.append(export_model(model, tokenizer, ModelCard(name=name, algorithm="mle"), root / name,
                                  dtype="float32"))
    return [*paths, write_base_card(root / "zero-shot", name=str(base_dir))]
