"""Options of the app: where it reads models, data and results, where it serves, and what a visitor may do."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from core import paths

TRAINING_ENV = "EMPATHYGAIL_TRAINING"
RESULTS_ENV = "EMPATHYGAIL_RESULTS"
WORK_ENV = paths.APP_ENV


@dataclass
class Settings:
    checkpoints_dir: Path | None = None  # shipped models; None: core.paths.checkpoints_dir()
    data_dir: Path | None = None  # datasets for training runs; None: core.paths.data_dir()
    results_dir: Path | None = None  # what `python -m core evaluate` wrote; None: $EMPATHYGAIL_RESULTS or results/
    work_dir: Path | None = None  # the app's own files (models it trained, votes, exports); None: $EMPATHYGAIL_APP_DIR
    # or runs/app
    host: str | None = None  # None: Gradio's own default ($GRADIO_SERVER_NAME, else 127.0.0.1), as Spaces expects
    port: int | None = None  # None: $GRADIO_SERVER_PORT, else the first free port from 7860
    training_enabled: bool = True  # $EMPATHYGAIL_TRAINING=0 hides the Train tab (public hosting)
    max_train_steps: int = 60  # cap on one run's update steps (a GAIL update on the 135M base: about half a minute)
    max_train_examples: int = 2000  # cap on the expert trajectories one run reads
    max_batch_size: int = 8  # cap on a run's batch (GAIL: samples per rollout; its buffer holds twice that)
    keep_app_models: int = 3  # models trained in the app kept on disk and in the lists (the newest); older go
    max_message_chars: int = 1000  # longer messages keep their end, as the model's own truncation does
    concurrency: int = 8  # requests served at once per event
    max_batch: int = 8  # chat replies written together in one batched call (core.serving); 1: one at a time
    precision: str = "auto"  # float32, bfloat16, or auto (core.models.generator.serving_dtype)

    def __post_init__(self):
        self.checkpoints_dir = paths.checkpoints_dir(self.checkpoints_dir)
        self.data_dir = paths.data_dir(self.data_dir)
        self.results_dir = _resolve(self.results_dir, RESULTS_ENV, paths.REPO_ROOT / "results")
        self.work_dir = paths.app_dir(self.work_dir)
        for name in ("max_train_steps", "max_train_examples", "max_message_chars", "max_batch", "keep_app_models"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_batch_size < 2:
            raise ValueError(f"max_batch_size must be at least 2, not {self.max_batch_size}")

    @property
    def models_dir(self) -> Path:
        """Where training runs started from the app save their models (listed beside the shipped ones)."""
        return self.work_dir / "models"

    @property
    def model_dirs(self) -> list[Path]:
        return [self.checkpoints_dir, self.models_dir]

    @property
    def emotion_dir(self) -> Path:
        return self.checkpoints_dir / "emotion"

    @property
    def votes_path(self) -> Path:
        return self.work_dir / "votes.csv"

    @property
    def arena_path(self) -> Path:
        return self.work_dir / paths.ARENA_VOTES

    @classmethod
    def from_env(cls, **values) -> Settings:
        """Settings from the environment, then the given values (None means: not given). A Hugging Face Space
        ($SPACE_ID set) is public, so training is off there unless $EMPATHYGAIL_TRAINING turns it on."""
        default = "0" if os.environ.get("SPACE_ID") else "1"
        training = os.environ.get(TRAINING_ENV, default).strip().lower() not in {"0", "false", "no", "off"}
        return cls(**{"training_enabled": training, **{k: v for k, v in values.items() if v is not None}})


def _resolve(path: str | os.PathLike | None, env: str, default: Path) -> Path:
    return Path(path or os.environ.get(env) or default).expanduser().resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="EmpathyGAIL demo: chat, compare, train, "
                                     "review and results in one Gradio app (offline; never shares a public link).")
    parser.add_argument("--checkpoints-dir", type=Path, help="models to serve (default: $EMPATHYGAIL_CHECKPOINTS "
                        "or checkpoints/)")
    parser.add_argument("--data-dir", type=Path, help="datasets for training runs (default: $EMPATHYGAIL_DATA or "
                        "../shared/data)")
    parser.add_argument("--results-dir", type=Path, help="evaluation results to show (default: "
                        f"${RESULTS_ENV} or results/)")
    parser.add_argument("--work-dir", type=Path, help="the app's own files: trained models, votes, exports "
                        f"(default: ${WORK_ENV} or runs/app)")
    parser.add_argument("--host", default=None, help="address to serve on (default: $GRADIO_SERVER_NAME or "
                        "127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    training = parser.add_mutually_exclusive_group()
    training.add_argument("--no-training", dest="training_enabled", action="store_false", default=None,
                          help=f"hide the Train tab (also: {TRAINING_ENV}=0)")
    training.add_argument("--training", dest="training_enabled", action="store_true",
                          help="show the Train tab even when the environment hides it")
    parser.add_argument("--max-train-steps", type=int, default=None, help="cap on a run's steps (default: 200)")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="cap on the trajectories a run reads (default: 2000)")
    parser.add_argument("--max-batch", type=int, default=None, help="chat replies written together in one batched "
                        "call when visitors ask at once (default 8; 1: one at a time)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None,
                        help="precision replies are computed in (default auto: bfloat16 on a GPU or a CPU with native "
                             "bfloat16, float32 on other CPUs)")
    return parser


def settings_from_args(argv: list[str] | None = None) -> Settings:
    args = vars(build_parser().parse_args(argv))
    return Settings.from_env(**{f.name: args.get(f.name) for f in fields(Settings)})
