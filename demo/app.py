"""The Gradio app: one tab per module, assembled here; `launch` serves it offline (no share link, no analytics)."""

from __future__ import annotations

import os

import gradio as gr

from demo import arena, chat, compare, results, review
from core.safety import NOTICE
from demo.models import ModelStore
from demo.settings import Settings

TITLE = "EmpathyGAIL"
INTRO = ("# EmpathyGAIL\nA small pretrained language model (SmolLM2-135M with LoRA adapters) taught to reply with "
         "empathy by imitation learning: a discriminator tells people's replies from the model's, and its judgement is "
         "the reward the model learns from (GAIL + PPO).")
LOADING_POLL_S = 2.0
CSS = "#chat-status p, #compare-status p { margin: 0.2em 0; }"


def build_app(settings: Settings | None = None, store: ModelStore | None = None) -> gr.Blocks:
    """The app's page on `store`'s models (by default a new store on `settings`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = settings or Settings.from_env()
    store = store or ModelStore(settings)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat_model, chat_missing = chat.build(store, settings, f"ℹ️ {NOTICE}")
            with gr.Tab("Compare", id="compare"):
                compare_parts = compare.build(store, settings)
            with gr.Tab("Arena", id="arena"):
                arena_parts = arena.build(store, settings)
            if settings.training_enabled:
                from demo import train  # only a server that offers training needs the engine

                with gr.Tab("Train", id="train"):
                    train.build(store, settings, chat_model, chat_missing)
            with gr.Tab("Review", id="review"):
                review_parts = review.build(settings)
            with gr.Tab("Results", id="results"):
                results_parts = results.build(settings)

        def on_load(current):
            return (*chat.refresh_models(store, current), *compare.on_load(store, settings),
                    *arena.tables(settings), *review.on_load(settings), *results.read_results(settings.results_dir))

        app.load(on_load, [chat_model], [chat_model, chat_missing, *compare_parts, *arena_parts, *review_parts,
                                         *results_parts], api_visibility="private")

        # While the models load (see ModelStore.warm_up) the page says so, and clears it once they are ready.
        loading = gr.Timer(LOADING_POLL_S)

        def while_loading(current):
            return (*chat.refresh_models(store, current), store.missing(), gr.Timer(active=bool(store.loading)))

        loading.tick(while_loading, [chat_model], [chat_model, chat_missing, compare_parts[0], loading],
                     api_visibility="private", show_progress="hidden")
    app.settings, app.store = settings, store  # for launch() and tests
    return app


def launch(app: gr.Blocks, settings: Settings, **kwargs):
    """Serve `app` on the configured host and port; never a public share link. Returns (server, local URL, None)
    with `prevent_thread_lock=True`; otherwise blocks until the server stops."""
    app.queue(default_concurrency_limit=settings.concurrency)
    # show_error: an API call with a wrong type is refused by Gradio before any handler runs, and its caller should
    # hear why; the handlers themselves turn every failure into a message of their own.
    return app.launch(server_name=settings.host, server_port=settings.port, share=False, show_error=True,
                      allowed_paths=[str(settings.results_dir), str(settings.work_dir)], css=CSS,
                      theme=gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                           font_mono=["ui-monospace", "monospace"]),
                      footer_links=["api"], **kwargs)
