"""The book's figure rule (every chapter and package figure): no text set below 9 pt and no
figure wider than 10 in, so that a figure shown at the page width keeps its text readable."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_POINTS, MAX_WIDTH_IN = 9, 10
SIZE_KEYWORDS = ("fontsize", "labelsize", "title_fontsize")


def _sources():
    for notebook in sorted((REPO_ROOT / "book").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                # IPython magics are not Python: blank them out before parsing
                text = re.sub(r"^\s*[%!].*$", "", "".join(cell["source"]), flags=re.M)
                yield f"{notebook.name} cell {index}", text
    for module in sorted((REPO_ROOT / "bgnet_lite").rglob("*.py")):
        yield str(module.relative_to(REPO_ROOT)), module.read_text()


def _violations(where: str, text: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.keyword):
            continue
        if node.arg in SIZE_KEYWORDS and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, int | float) and node.value.value < MIN_POINTS:
            found.append(f"{where}: {node.arg}={node.value.value}")
        if node.arg == "figsize" and isinstance(node.value, ast.Tuple):
            width = node.value.elts[0]
            if isinstance(width, ast.Constant) and width.value > MAX_WIDTH_IN:
                found.append(f"{where}: figsize width {width.value}")
    return found


def test_no_small_text_and_no_wide_figures():
    found = [problem for where, text in _sources() for problem in _violations(where, text)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("text, expected", [
    ("ax.set_title('x', fontsize=8)", 1), ("ax.tick_params(labelsize=9)", 0),
    ("plt.subplots(1, 2, figsize=(12, 3))", 1), ("plt.subplots(figsize=(10, 3))", 0)])
def test_the_rule_catches_what_it_should(text, expected):
    assert len(_violations("snippet", text)) == expected
