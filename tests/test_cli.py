"""`python -m core ... --help` stays fast: building the parser and printing any command's help imports no torch,
transformers or datasets (the commands import those only when they run)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from core import bench, bench_options
from core.__main__ import build_parser
from core.paths import REPO_ROOT

HEAVY = ("torch", "transformers", "datasets")
# Prints `--help` for argv inside a fresh interpreter, then the heavy modules it imported.
PROBE = """
import sys
from core.__main__ import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:", sorted(m for m in {heavy} if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [[], ["data"], ["data", "build"], ["data", "stats"], ["tokenizer"], ["train"],
                                  ["train", "mle"], ["train", "all"], ["evaluate"], ["chat"], ["bench"]],
                         ids=lambda argv: " ".join(argv) or "core")
def test_help_imports_nothing_heavy(argv):
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv, "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m core" in result.stdout
    assert result.stdout.strip().endswith("HEAVY: []"), result.stdout[-300:]


def test_bench_parser_offers_core_bench_sections_and_options():
    args = build_parser().parse_args(["bench", "gail-step", "all", "--prompts", "4", "--cache-implementation",
                                      "static"])
    assert args.sections == ["gail-step", "all"] and args.prompts == 4 and args.cache_implementation == "static"
    assert list(bench.SECTIONS) == list(bench_options.SECTIONS)
    assert all(callable(function) for function in bench.SECTIONS.values())
    assert bench.BenchOptions is bench_options.BenchOptions
    assert {f.name for f in fields(bench.BenchOptions)} <= set(vars(args))
