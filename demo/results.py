"""Results tab: the evaluation table, its plots and example replies, as `python -m core evaluate` wrote them."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo.settings import Settings

TABLE, EXAMPLES = "table.md", "examples.md"
HOW_TO_MAKE = ("Run `python -m core evaluate` (see README); it writes table.md, table.csv, the plots and "
               "examples.md there.")


def read_results(results_dir: Path) -> tuple[str, list[tuple[str, str]], str]:
    """(table markdown, [(plot path, caption)], examples markdown); a clear note where something is missing."""
    results_dir = Path(results_dir)

    def read(name: str) -> str | None:
        try:
            return (results_dir / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    table = read(TABLE)
    if table is None:
        table = f"**Not available yet:** no evaluation results in the results folder (`{results_dir.name}/`). " \
                f"{HOW_TO_MAKE}"
    plots = [(str(p), p.stem.replace("_", " ")) for p in sorted(results_dir.glob("*.png")) if p.is_file()]
    examples = read(EXAMPLES) or ""
    return table, plots, examples


def build(settings: Settings) -> tuple[gr.Markdown, gr.Gallery, gr.Markdown]:
    gr.Markdown("Evaluation on the held-out test conversations (what `python -m core evaluate` wrote).")
    table = gr.Markdown(elem_id="results-table")
    plots = gr.Gallery(label="Plots", columns=2, height=440, object_fit="contain", elem_id="results-plots")
    with gr.Accordion("Example replies", open=False):
        examples = gr.Markdown()
    return table, plots, examples
