import os

import pytest

from core import paths  # first: it sets how torch's threads wait, which must precede importing torch
import torch  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if (paths.data_dir() / "empatheticdialogues").is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {paths.data_dir()} (set ${paths.DATA_ENV})")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def real_data_dir():
    return paths.data_dir()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The app's tiny world (demo/tiny_world.py): three tiny models, an emotion model, a discriminator,
    results."""
    from demo.tiny_world import build_world

    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def settings(world, tmp_path):
    """The app's settings over the tiny world, with a fresh work dir and no data."""
    from demo.settings import Settings

    return Settings(checkpoints_dir=world["checkpoints"], results_dir=world["results"], work_dir=tmp_path / "work",
                    data_dir=tmp_path / "no-data", max_message_chars=300)
