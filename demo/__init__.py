"""The Gradio app: `demo.app.build_app(settings)` assembles the tabs; `app.py` at the repository root serves it."""
