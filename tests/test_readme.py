"""The README's code blocks run as written, each on its own, and print what it shows.

A ```python block followed by a ```text block must print that text (numbers in
scientific notation, such as gradient-check errors, may differ in their digits: they
depend on the platform's floating-point library, but the check must still pass).
"""
import contextlib
import io
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", re.S)
SCIENTIFIC = re.compile(r"\d\.\d+e[-+]\d+")


def _readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def _blocks():
    """[(code, expected output or None)] for every ```python block."""
    return [(code, expected or None) for code, expected in BLOCK.findall(_readme())]


def _run(code, index):
    """Execute ``code`` in a fresh namespace (every block is self-contained); its stdout."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "readme"})
    return printed.getvalue()


def test_readme_has_code_blocks():
    blocks = _blocks()
    assert len(blocks) >= 2
    assert all(expected is not None for _, expected in blocks), \
        "every README snippet shows what it prints"


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_prints_what_it_shows(index):
    code, expected = _blocks()[index]
    printed = _run(code, index)
    if expected is not None:
        assert SCIENTIFIC.sub("<e>", printed) == SCIENTIFIC.sub("<e>", expected)


def test_first_model_learns_xor():
    code = next(code for code, _ in _blocks() if "XOR" in code)
    last = _run(code, "xor").strip().splitlines()[-1]
    accuracy = float(re.search(r"accuracy ([\d.]+)%", last).group(1))
    assert accuracy > 95.0, last


def test_gradient_snippet_catches_a_broken_backward():
    """The README says a wrong backward makes the input row FAIL: check that it does."""
    code = next(code for code, _ in _blocks() if "check_layer" in code)
    assert "return dy * self.w.data" in code
    broken = code.replace("return dy * self.w.data", "return dy")
    printed = _run(broken, "broken")
    rows = {line.split()[0]: line.split()[-1] for line in printed.splitlines()[2:]
            if line.startswith("  ") and not line.startswith("      ")}
    assert rows == {"input": "FAIL", "w": "ok"}, printed


def test_set_up_commands():
    text = _readme()
    # .ci/run depends on this exact line.
    assert '    pip install -e ".[test]" && python -m pytest -q\n' in text
    assert "MINIDL_DATA=/path/to/mnist python examples/mnist_mlp.py" in text
    for link in re.findall(r"\]\(([^)#:]+)\)", text):  # relative links point at real paths
        if link == "tutorials/" and not os.path.isdir(os.path.join(ROOT, "tutorials")):
            continue  # the notebooks are written on another branch (issue 13, item 1)
        assert os.path.exists(os.path.join(ROOT, link)), link
