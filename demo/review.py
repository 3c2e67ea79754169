"""Review tab: browse the test-set generations that `python -m core evaluate` saved, filter, search, export."""

from __future__ import annotations

import time
from functools import partial
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.scoring.evaluate import GENERATIONS, read_generations
from demo.models import NotAvailable
from demo.settings import Settings

ALL = "all"
SHOWN = 200  # rows drawn in the page; the export has every filtered row
HISTORY_CHARS = 160  # of the history shown in the page (its end)
BASE_COLUMNS = ["source", "bucket", "emotion", "history", "prompt", "expert"]
HOW_TO_MAKE = "run `python -m core evaluate` (see README); it writes generations.jsonl there"


def load_generations(results_dir: Path) -> pd.DataFrame:
    """One row per test example: its context, the expert reply and each model's first reply."""
    path = Path(results_dir)
    file = path / GENERATIONS
    if not file.is_file():
        raise NotAvailable(f"not available yet: no saved generations in the results folder (`{path.name}/`; "
                           f"{HOW_TO_MAKE})")
    stat = file.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size).copy()


@lru_cache(maxsize=2)
def _load(results_dir: str, mtime_ns: int, size: int) -> pd.DataFrame:
    try:
        records, meta = read_generations(Path(results_dir))
    except (OSError, ValueError, KeyError) as error:
        raise NotAvailable(f"the saved generations in `{Path(results_dir).name}/` could not be read: "
                           f"{type(error).__name__}") from error
    models = [m["name"] for m in meta.get("models", [])]
    rows = []
    for r in records:
        replies = r.get("replies", {})
        rows.append({"source": r.get("source", ""), "bucket": str(r.get("bucket", "")), "emotion": r.get("emotion", ""),
                     "history": " / ".join(r.get("history", [])), "prompt": r.get("prompt", ""),
                     "expert": r.get("expert", ""),
                     **{m: (replies.get(m) or [""])[0] for m in models}})
    return pd.DataFrame(rows, columns=BASE_COLUMNS + models)


def filter_rows(table: pd.DataFrame, emotion: Any = ALL, source: Any = ALL, bucket: Any = ALL,
                search: Any = "") -> pd.DataFrame:
    """Rows matching every chosen filter, and containing `search` (any case) in any text column."""
    keep = pd.Series(True, index=table.index)
    for column, value in (("emotion", emotion), ("source", source), ("bucket", bucket)):
        if isinstance(value, str) and value and value != ALL:
            keep &= table[column] == value
    if isinstance(search, str) and search.strip():
        needle = search.strip().lower()[:500]
        text = table.drop(columns=["source", "bucket", "emotion"]).astype(str).agg(" ".join, axis=1).str.lower()
        keep &= text.str.contains(needle, regex=False)
    return table[keep]


def choices(table: pd.DataFrame, column: str) -> list[str]:
    return [ALL] + sorted(v for v in table[column].unique() if v)


def show(settings: Settings, emotion: Any = ALL, source: Any = ALL, bucket: Any = ALL, search: Any = ""
         ) -> tuple[pd.DataFrame, str]:
    """The filtered rows (at most SHOWN) and a line saying how many matched."""
    try:
        table = load_generations(settings.results_dir)
    except NotAvailable as error:
        return pd.DataFrame(columns=BASE_COLUMNS), str(error)
    rows = filter_rows(table, emotion, source, bucket, search)
    note = f"{len(rows):,} of {len(table):,} examples match"
    if len(rows) > SHOWN:
        note += f"; the first {SHOWN} are shown, the export has all of them"
    return for_the_page(rows.head(SHOWN)), note + "."


def for_the_page(rows: pd.DataFrame) -> pd.DataFrame:
    """The replies first and a long history cut to its end, so that the prompt and the replies stay in view on a
    screen; the export keeps every column whole."""
    shown = rows.copy()
    shown["history"] = shown["history"].map(lambda h: h if len(h) <= HISTORY_CHARS else "…" + h[-HISTORY_CHARS:])
    replies = [c for c in shown.columns if c not in BASE_COLUMNS]
    return shown[["prompt", "expert", *replies, "history", "emotion", "source", "bucket"]]


def export(settings: Settings, emotion: Any = ALL, source: Any = ALL, bucket: Any = ALL, search: Any = ""
           ) -> tuple[str | None, str]:
    """Write the filtered rows to a CSV under the app's folder; returns (file path or None, message)."""
    try:
        rows = filter_rows(load_generations(settings.results_dir), emotion, source, bucket, search)
    except NotAvailable as error:
        return None, str(error)
    folder = settings.work_dir / "exports"
    path = folder / f"review-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}.csv"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rows.to_csv(path, index=False)
    except OSError as error:
        return None, f"⚠️ Could not write {path}: {error.strerror or error}"
    return str(path), f"Exported {len(rows):,} row{'' if len(rows) == 1 else 's'}."


def filters(settings: Settings) -> tuple[dict, dict, dict]:
    """Dropdown choices from the saved generations (only `all` while there are none)."""
    try:
        table = load_generations(settings.results_dir)
    except NotAvailable:
        return (gr.update(choices=[ALL], value=ALL),) * 3
    return tuple(gr.update(choices=choices(table, c), value=ALL) for c in ("emotion", "source", "bucket"))


def build(settings: Settings) -> tuple[gr.Dropdown, ...]:
    gr.Markdown("Test-set replies saved by `python -m core evaluate`: the context, the expert's reply and every "
                "model's reply.")
    with gr.Row():
        # Choices come from the results on page load; an API client may send any value (no match: no rows).
        emotion = gr.Dropdown([ALL], value=ALL, label="Emotion", elem_id="review-emotion", allow_custom_value=True)
        source = gr.Dropdown([ALL], value=ALL, label="Source", allow_custom_value=True)
        bucket = gr.Dropdown([ALL], value=ALL, label="Turn bucket", allow_custom_value=True)
        search = gr.Textbox(label="Search", placeholder="words in any text", scale=2, elem_id="review-search")
    note = gr.Markdown(elem_id="review-note")
    table = gr.Dataframe(pd.DataFrame(columns=BASE_COLUMNS), wrap=True, interactive=False, max_height=600,
                         elem_id="review-table")
    with gr.Row():
        export_button = gr.Button("Export filtered rows (CSV)")
        file = gr.File(label="Export", interactive=False)
    export_note = gr.Markdown()

    inputs = [emotion, source, bucket, search]
    for control in (emotion, source, bucket):
        control.change(partial(show, settings), inputs, [table, note], api_visibility="private")
    search.submit(partial(show, settings), inputs, [table, note], api_name="review")
    export_button.click(partial(export, settings), inputs, [file, export_note], api_name="export_review")
    return emotion, source, bucket, table, note


def on_load(settings: Settings):
    """Fill the filters and the first page when the page opens."""
    return (*filters(settings), *show(settings))
