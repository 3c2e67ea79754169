"""EmpathyGAIL's demo: `python app.py --help`. Also the entry point of the Hugging Face Space (app_file)."""

import os
import sys
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reports
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the app needs is local; never fetch at start-up
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from demo.settings import settings_from_args

    settings = settings_from_args(argv)  # --help exits here, before the heavy imports
    from demo.models import ModelStore

    store = ModelStore(settings)
    # The models load while gradio is imported and the page is built; until they are in, the page says so.
    threading.Thread(target=store.warm_up, name="warm-up", daemon=True).start()
    from demo.app import build_app, launch

    launch(build_app(settings, store), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
