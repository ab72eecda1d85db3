"""The shape of the house: the app reaches the library only through `wm_core`'s public names, files stay
readable in one sitting, and functions fit on a screen (a family's `loss` may run a little longer)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "wm_core").rglob("*.py"), *(ROOT / "playground").rglob("*.py")])
MAX_FILE_LINES, MAX_FUNCTION_LINES, MAX_LOSS_LINES = 400, 80, 100


def test_the_app_uses_the_public_api_only() -> None:
    deep = []
    for path in [*(ROOT / "playground").rglob("*.py"), ROOT / "app.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import) wm_core\.", line):
                deep.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not deep, "the app imports wm_core's internals:\n" + "\n".join(deep)


def test_files_are_short() -> None:
    long = [f"{p.relative_to(ROOT)} ({n})" for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_functions_fit_on_a_screen() -> None:
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                limit = MAX_LOSS_LINES if node.name == "loss" else MAX_FUNCTION_LINES
                if n > limit:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over the limit:\n" + "\n".join(long)
