"""README's Python snippets: each compiles, and the ones that stand alone run as written."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_has_python_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_each_python_snippet_compiles(block):
    compile(block, "README.md", "exec")


def test_the_own_view_snippet_declares_a_working_policy():
    (block,) = [b for b in BLOCKS if "@verified(" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    assert namespace["PANEL"].event == "panel"
    assert namespace["issue_panel"].connect_policy is namespace["PANEL"]
