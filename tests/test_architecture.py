"""docs/architecture.md's import rules are the real imports: every import in core/, demo/, scripts/ and app.py
goes to its own layer or one the table allows, nothing outside tests/ imports tests/, and core/ never imports
gradio."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from core.paths import REPO_ROOT

PROJECT = ("core", "demo", "scripts", "app", "tests")


def import_rules(doc: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(module prefix -> layer, layer -> the layers it may import) from the table under "Import rules"."""
    text = doc.read_text().split("### Import rules", 1)[1].split("\n## ", 1)[0]
    prefixes, allowed = {}, {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "---"):
            continue
        layer, modules, may = cells
        for module in re.findall(r"`([\w.]+)`", modules):
            prefixes[module] = layer
        allowed[layer] = {m.strip() for m in may.split(",") if m.strip()}
    for layer, may in allowed.items():
        expanded = set()
        for item in may:
            if item == "all of `core`":
                expanded |= {layer for prefix, layer in prefixes.items() if prefix == "core" or
                             prefix.startswith("core.")}
            else:
                expanded.add(item)
        allowed[layer] = expanded
    return prefixes, allowed


def module_name(file: Path, root: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(file: Path, module: str) -> list[str]:
    """The module (or module.name) each import statement of a file reaches, anywhere in it (inside functions too),
    relative imports resolved: `from core.scoring import metrics` -> core.scoring.metrics."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def layer_of(module: str, prefixes: dict[str, str]) -> str | None:
    matches = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return prefixes[max(matches, key=len)] if matches else None


def violations(root: Path, prefixes: dict[str, str], allowed: dict[str, set[str]]) -> list[str]:
    files = [*root.glob("core/**/*.py"), *root.glob("demo/**/*.py"), *root.glob("scripts/**/*.py"), root / "app.py"]
    found = []
    for file in sorted(f for f in files if f.is_file()):
        module = module_name(file, root)
        layer = layer_of(module, prefixes)
        if layer is None:
            found.append(f"{module}: in no layer of the table")
            continue
        for name in imported(file, module):
            top = name.split(".")[0]
            if top == "tests":
                found.append(f"{module} imports {name}: nothing outside tests/ imports tests/")
            elif top == "gradio" and module.split(".")[0] == "core":
                found.append(f"{module} imports gradio: core/ never does")
            elif top in PROJECT:
                target = layer_of(name, prefixes)
                if target is not None and target != layer and target not in allowed[layer]:
                    found.append(f"{module} ({layer}) imports {name} ({target})")
    return found


RULES = import_rules(REPO_ROOT / "docs" / "architecture.md")


def test_the_table_names_every_layer_it_allows():
    prefixes, allowed = RULES
    assert {"leaves", "data", "models", "engine", "registry", "scoring", "demo"} <= set(allowed)
    assert all(may <= set(allowed) for may in allowed.values())


def test_every_import_follows_the_documented_flow():
    assert violations(REPO_ROOT, *RULES) == []


@pytest.mark.parametrize("source, message", [
    ("from core.scoring import metrics\n", "core.engine.trainer (engine) imports core.scoring"),
    ("from core.registry import load_responder\n", "core.engine.trainer (engine) imports core.registry"),
    ("def f():\n    from tests.demo import x\n", "nothing outside tests/ imports tests/"),
    ("from ..scoring.metrics import bleu\n", "imports core.scoring.metrics"),
    ("import gradio\n", "core/ never does"),
])
def test_an_import_against_the_flow_is_caught(tmp_path, source, message):
    (tmp_path / "core" / "engine").mkdir(parents=True)
    (tmp_path / "core" / "engine" / "trainer.py").write_text(source)
    found = violations(tmp_path, *RULES)
    assert len(found) == 1 and message in found[0]
