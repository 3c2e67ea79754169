"""Speed benchmarks: each section is a function `(BenchSetup, BenchOptions) -> dict of figures`.

`python -m core bench <section> --size {tiny,small,gpt2-124m}` builds a generator of that size with random weights
(speed does not depend on what the weights say), random prompts of a fixed token length, and runs the section.
Add a section by writing its function and one entry in core.bench_options.SECTIONS (the CLI reads its names
and options from there without importing torch).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core import bench_options
from core.bench_options import BenchOptions
from core.engine.runtime import hardware_name, peak_memory_mb, reset_peak_memory, seed_everything
from core.models.generator import Decoding, GeneratorConfig, build_generator, generate_encoded, response_logprobs
from core.models.storage import resolve_device
from core.text import BOT, USER, Encoded, collate


@dataclass
class BenchSetup:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompts: list[Encoded]
    device: torch.device
    size: str

    def autocast(self):
        """bf16 autocast on CUDA, as training runs; nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def prepare(size: str, generator: GeneratorConfig, tokenizer: PreTrainedTokenizerBase, options: BenchOptions,
            vocab_size: int | None = None, device: str | torch.device | None = None) -> BenchSetup:
    """A generator of the given size (embeddings padded to `vocab_size` when the tokenizer is smaller, so the
    LM head costs what the real one does) and `options.prompts` random prompts ending with `<|bot|>`."""
    device = resolve_device(device)
    seed_everything(options.seed)
    model = build_generator(generator, tokenizer)
    if vocab_size and vocab_size > len(tokenizer):
        model.resize_token_embeddings(vocab_size)
    model.to(device)
    room = model.config.n_positions - options.new_tokens
    if room < 3:
        raise ValueError(f"--new-tokens {options.new_tokens} leaves no room for a prompt in a context of "
                         f"{model.config.n_positions}")
    length = min(options.prompt_tokens, room)
    user, bot = tokenizer.convert_tokens_to_ids([USER, BOT])
    # Ordinary tokens only: a trained BPE puts its special tokens first, GPT-2's after 50255.
    high = min(len(tokenizer), 50256)
    words = torch.randint(3, high, (options.prompts, length - 2)).tolist()
    prompts = [Encoded([user, *w, bot], length, False) for w in words]
    return BenchSetup(model=model, tokenizer=tokenizer, prompts=prompts, device=device, size=size)


def bench_generation(setup: BenchSetup, options: BenchOptions) -> dict[str, Any]:
    """Rollout tokens/s of the batched `generate` against one-by-one `model.generate` calls, and a PPO-style
    update (a no-grad log-prob pass, then AdamW minibatch steps on the clipped loss over response log-probs)."""
    model, tokenizer = setup.model, setup.tokenizer
    decoding = Decoding(max_new_tokens=options.new_tokens, seed=options.seed,
                        cache_implementation=options.cache_implementation)
    model.eval()
    reset_peak_memory(setup.device)
    with setup.autocast():
        generate_encoded(model, tokenizer, setup.prompts[:2], Decoding(max_new_tokens=2))  # warm-up
        setup.sync()
        tick = time.perf_counter()
        rollout = generate_encoded(model, tokenizer, setup.prompts, decoding)
        setup.sync()
        batched_s = time.perf_counter() - tick
        new_tokens = sum(len(s.input_ids) - s.response_start for s in rollout.sequences)

        singles = setup.prompts[:options.one_by_one or len(setup.prompts)]
        stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(USER)]
        single_tokens, tick = 0, time.perf_counter()
        for e in singles:
            ids = torch.tensor([e.input_ids], device=setup.device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                                 max_new_tokens=options.new_tokens, eos_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id)
            single_tokens += out.shape[1] - ids.shape[1]
        setup.sync()
        single_s = (time.perf_counter() - tick) / len(singles)
    figures = {
        "size": setup.size, "device": hardware_name(setup.device),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "prompts": len(setup.prompts), "prompt_tokens": len(setup.prompts[0].input_ids),
        "new_tokens_max": options.new_tokens,
        "rollout_s": batched_s, "rollout_tokens_per_s": new_tokens / batched_s,
        "one_by_one_s_per_sample": single_s, "one_by_one_samples_timed": len(singles),
        "one_by_one_tokens_per_s": single_tokens / (single_s * len(singles)),
        "batched_speedup": single_s * len(setup.prompts) / batched_s,
    }
    figures.update(_ppo_update(setup, rollout.sequences, options))
    figures["peak_memory_mb"] = peak_memory_mb(setup.device)
    return figures


def _ppo_update(setup: BenchSetup, sequences: list[Encoded], options: BenchOptions) -> dict[str, float]:
    model, pad = setup.model, setup.tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01,
                                  fused=setup.device.type == "cuda")
    batches = [collate([sequences[(step * options.minibatch + i) % len(sequences)] for i in range(options.minibatch)],
                       pad) for step in range(options.minibatch_steps)]
    batches = [{k: v.to(setup.device) for k, v in b.items()} for b in batches]
    advantages = torch.randn(options.minibatch_steps, options.minibatch, device=setup.device)
    with setup.autocast():
        setup.sync()
        tick = time.perf_counter()
        with torch.no_grad():
            old = [response_logprobs(model, **b).sum(dim=1) for b in batches]
        setup.sync()
        old_s = time.perf_counter() - tick
        model.train()
        tokens, tick = 0, time.perf_counter()
        for batch, before, advantage in zip(batches, old, advantages):
            ratio = torch.exp(response_logprobs(model, **batch).sum(dim=1) - before)
            loss = -torch.min(ratio * advantage, ratio.clamp(0.8, 1.2) * advantage).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
        setup.sync()
        update_s = time.perf_counter() - tick
    model.eval()
    return {"logprob_pass_s": old_s, "update_s": update_s, "update_steps": options.minibatch_steps,
            "update_minibatch": options.minibatch, "update_tokens_per_s": tokens / update_s}


def bench_gail_step(setup: BenchSetup, options: BenchOptions) -> dict[str, Any]:
    """Seconds per whole GAIL update step of EmpathyGAIL's configuration (configs/empathygail.yaml): rollouts of
    `--prompts` contexts (the buffer), D scores and its update, PPO over the buffer in minibatches of
    `--minibatch`. The engine's step (batched rollouts, bf16 autocast and fused AdamW on CUDA) against a
    straightforward loop (one `generate` call per context, fp32, foreach AdamW) in the same run, each timed twice
    after a warm-up step (the faster try is reported). The emotion model has random head weights and the buffer
    holds no demonstrations: neither changes the cost."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from datasets import Dataset, DatasetDict

    from core.config import load_config
    from core.engine import gail
    from core.engine.runtime import create_accelerator
    from core.models.emotion import EmotionClassifier, EmotionConfig
    from core.paths import REPO_ROOT

    tokenizer = setup.tokenizer
    texts = tokenizer.batch_decode([p.input_ids[1:-1] for p in setup.prompts], skip_special_tokens=True)
    replies = tokenizer.batch_decode(torch.randint(3, min(len(tokenizer), 50256), (len(texts), 20)).tolist(),
                                     skip_special_tokens=True)
    rows = [dict(source="bench", split="train", conv_id=str(i), turn=0, bucket="1", history=[], history_speakers=[],
                 prompt_speaker="A", response_speaker="B", prompt=t, response=r, emotion="", situation="")
            for i, (t, r) in enumerate(zip(texts, replies))]
    data = DatasetDict({"train": Dataset.from_list(rows)})
    accelerator = create_accelerator(cpu=setup.device.type == "cpu")
    figures: dict[str, Any] = {"size": setup.size, "device": hardware_name(setup.device), "buffer": len(rows),
                               "minibatch": options.minibatch, "new_tokens_max": options.new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        setup.model.save_pretrained(Path(tmp, "init"))
        tokenizer.save_pretrained(Path(tmp, "init"))
        emotion = str(EmotionClassifier(EmotionConfig()).save_pretrained(Path(tmp, "emotion")))
        config = load_config(gail.GAILConfig, REPO_ROOT / "configs" / "empathygail.yaml", [
            f"init_from={tmp}/init", f"emotion_model={emotion}", f"discriminator.emotion_model={emotion}",
            f"run_dir={tmp}/run", "d_pretrain_steps=0", "demo_ratio=0", f"buffer_size={len(rows)}",
            f"sample_batch_size={min(16, len(rows))}", f"minibatch_size={options.minibatch}", "warmup_steps=0",
            f"decoding.max_new_tokens={options.new_tokens}", "shaping_prior_samples=16"])
        trainers = {}
        for name, straightforward in (("engine", False), ("straightforward", True)):
            seed_everything(options.seed)
            trainer = gail.GAILTrainer(dataclasses.replace(config, sample_batch_size=1) if straightforward else config,
                                       data["train"], accelerator)
            if straightforward:
                for key, optimizer in trainer.parts["optimizers"].items():
                    trainer.parts["optimizers"][key] = torch.optim.AdamW(
                        [p for group in optimizer.param_groups for p in group["params"]], lr=1e-5,
                        weight_decay=0.01, foreach=True)
            precision = contextlib.nullcontext if straightforward else setup.autocast
            with precision():
                trainer.step(0)  # warm-up: first-call costs (allocations, kernels, optimizer state) are not timed
            trainers[name] = (trainer, precision)
        # Interleaved, best of two: on a shared machine a neighbour's burst then slows one try, not one variant.
        for attempt in (1, 2):
            for name, (trainer, precision) in trainers.items():
                reset_peak_memory(setup.device)
                with _timed(gail, ("fill_buffer", "rewards_for", "discriminator_update", "ppo_update"), setup) as parts:
                    setup.sync()
                    tick = time.perf_counter()
                    with precision():
                        metrics = trainer.step(attempt)
                    setup.sync()
                    seconds = time.perf_counter() - tick
                if seconds < figures.get(f"{name}_step_s", float("inf")):
                    figures[f"{name}_step_s"] = seconds
                    figures.update({f"{name}_{part}_s": value for part, value in parts.items()})
                    figures[f"{name}_reply_tokens"] = metrics["reply_tokens"]
                figures[f"{name}_peak_memory_mb"] = peak_memory_mb(setup.device)
    figures["speedup"] = figures["straightforward_step_s"] / figures["engine_step_s"]
    return figures


@contextlib.contextmanager
def _timed(module, names: tuple[str, ...], setup: BenchSetup):
    """Wall time spent in each named function of `module` while the block runs."""
    originals, seconds = {name: getattr(module, name) for name in names}, {}

    def wrap(name, function):
        def timed(*args, **kwargs):
            tick = time.perf_counter()
            result = function(*args, **kwargs)
            setup.sync()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - tick
            return result
        return timed

    for name, function in originals.items():
        setattr(module, name, wrap(name, function))
    try:
        yield seconds
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


SECTIONS: dict[str, Callable[[BenchSetup, BenchOptions], dict[str, Any]]] = {
    name: globals()[function] for name, function in bench_options.SECTIONS.items()
}
