"""The README's code blocks run as written (the front door must stay true)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _python_blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_readme_has_code_blocks():
    assert len(_python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_block_runs(index):
    namespace = {}
    for block in _python_blocks()[: index + 1]:  # later blocks may use earlier imports
        exec(compile(block, f"README block {index}", "exec"), namespace)
