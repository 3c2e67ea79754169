"""The whole pipeline in order, resuming whatever is already done: `python -m core train all --preset cpu`.

pretrained base -> tokenizer -> base LM pretraining -> MLE -> emotion model -> RL-Seq2Seq -> TextGAIL -> EmpathyGAIL
-> evaluate. The pretrained base (SmolLM2, converted once) serves when MLE starts from it; the from-scratch GPT-2's
tokenizer and pretraining run only when MLE starts from that model (or RL-Seq2Seq still needs the tokenizer).
A stage whose model already carries a complete model card is skipped; one with checkpoints resumes from them.
Each stage's settings are configs/<stage>.yaml with the preset's section merged over it; the preset's
`pipeline:` section sets the tokenizer's size and the evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import paths
from core.config import from_dict
from core.config import read_yaml
from core.engine.recipes import build_config, preset_path, recipe
from core.models import base
from core.models.card import CARD_FILE, ModelCard
from core.text import VOCAB_SIZE

TRAINING = ("pretrain", "mle", "emotion", "rl_seq2seq", "textgail", "empathygail")
STAGES = ("base", "tokenizer", *TRAINING, "evaluate")
COMPARED = ("mle", "rl_seq2seq", "textgail", "empathygail")  # the models of the results table


@dataclass
class PipelineConfig:
    vocab_size: int = VOCAB_SIZE
    evaluate: dict[str, Any] = field(default_factory=dict)  # EvalConfig fields (seeds, out, max_examples, ...)
    examples: int = 6  # test examples drawn into examples.md
    base_card: str = "checkpoints/base"  # the card that serves the pretrained base zero-shot (and is scored)


def pipeline_config(preset: str | None) -> PipelineConfig:
    if not preset:
        return PipelineConfig()
    return from_dict(PipelineConfig, read_yaml(preset_path(preset)).get("pipeline") or {})


def is_done(output_dir: str | Path) -> bool:
    """A model that finished training: its card does not say the run was stopped early. The emotion model is no
    Responder and has no card; its trainer writes metrics.json last, once the model is saved."""
    if (Path(output_dir) / CARD_FILE).is_file():
        return ModelCard.load(output_dir).metrics.get("complete", True) is not False
    return (Path(output_dir) / "metrics.json").is_file() and (Path(output_dir) / "config.json").is_file()


def run_pipeline(preset: str | None = None, stages: Sequence[str] = STAGES, overrides: Sequence[str] = (),
                 log: Callable[[str], Any] = print) -> dict[str, Path]:
    """Run the stages in order; `overrides` (key=value) apply to every training stage that has the field."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    configs = {name: build_config(name, preset=preset, overrides=["resume=true", *_fitting(name, overrides)])
               for name in TRAINING}
    outputs = {name: Path(config.output_dir) for name, config in configs.items()}
    settings = pipeline_config(preset)
    for stage in [s for s in STAGES if s in stages]:
        started = time.perf_counter()
        unneeded = _unneeded(stage, configs, outputs)
        if unneeded:
            log(f"[{stage}] not needed: {unneeded}")
            continue
        if stage == "base":
            outputs[stage] = _base(settings, log)
        elif stage == "tokenizer":
            outputs[stage] = _tokenizer(configs["pretrain"], settings, log)
        elif stage == "evaluate":
            outputs[stage] = _evaluate(configs, settings, log)
        elif is_done(outputs[stage]):
            log(f"[{stage}] done already: {outputs[stage]}")
            continue
        else:
            log(f"[{stage}] training -> {outputs[stage]}")
            _, train = recipe(stage)
            outputs[stage] = Path(train(configs[stage]))
        log(f"[{stage}] finished in {time.perf_counter() - started:.0f} s")
    return outputs


def _unneeded(stage: str, configs: dict[str, Any], outputs: dict[str, Path]) -> str:
    """Why a stage can be left out ("" when it is needed)."""
    start = configs["mle"].generator.name_or_path
    from_scratch = start is not None and Path(start).resolve() == Path(configs["pretrain"].output_dir).resolve()
    if stage == "base" and not base.is_base(start):
        return f"MLE starts from {start}, not the pretrained base"
    if stage == "pretrain" and not from_scratch:
        return f"MLE starts from {start}"
    if stage == "tokenizer" and not from_scratch and is_done(outputs["rl_seq2seq"]):
        return "neither pretraining nor RL-Seq2Seq needs it"
    return ""


def _base(settings: PipelineConfig, log) -> Path:
    from core.models.card import write_base_card

    folder = base.ensure_base()
    card = Path(settings.base_card)
    if not (card / CARD_FILE).is_file():
        write_base_card(card)
    log(f"[base] {base.BASE_NAME} in {folder}; zero-shot card in {card}")
    return card


def _fitting(name: str, overrides: Sequence[str]) -> list[str]:
    """The overrides whose top-level field the recipe's config has (e.g. data.data_dir for all but none else)."""
    config_class, _ = recipe(name)
    fields = config_class.__dataclass_fields__
    return [item for item in overrides if item.split("=", 1)[0].split(".")[0] in fields]


def _tokenizer(pretrain_config, settings: PipelineConfig, log) -> Path:
    from core.engine.mle import training_texts
    from core.text import train_tokenizer

    out = Path(pretrain_config.tokenizer or paths.TOKENIZER_DIR)
    if (out / "tokenizer.json").is_file():
        log(f"[tokenizer] done already: {out}")
        return out
    texts = training_texts(pretrain_config.data)
    train_tokenizer(texts, vocab_size=settings.vocab_size).save_pretrained(out)
    log(f"[tokenizer] {settings.vocab_size} tokens trained on {len(texts):,} utterances -> {out}")
    return out


def _evaluate(configs: dict[str, Any], settings: PipelineConfig, log) -> Path:
    from core.scoring.evaluate import EvalConfig, evaluate
    from core.scoring.report import write_report

    # The zero-shot base is scored beside the models tuned from it: what fine-tuning changed
    zero_shot = [settings.base_card] if base.is_base(configs["mle"].generator.name_or_path) and \
        (Path(settings.base_card) / CARD_FILE).is_file() else []
    values = {"models": [*zero_shot, *(configs[name].output_dir for name in COMPARED)],
              "emotion_model": configs["emotion"].output_dir,
              # one fixed discriminator scores every model's replies (it was trained against EmpathyGAIL's)
              "discriminator": configs["empathygail"].output_dir,
              "data_dir": configs["mle"].data.data_dir, **settings.evaluate}
    config = from_dict(EvalConfig, values)
    files = write_report(evaluate(config), config.out, n_examples=settings.examples)
    log(f"[evaluate] wrote {', '.join(str(p) for p in files.values())}")
    return Path(config.out)
