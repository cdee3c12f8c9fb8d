"""The README's Python example runs and its comparison passes: the README stays true."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs():
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    grads, auto = scope["grads"], scope["auto"]
    assert set(grads) == set(auto) == {"Wxh", "Whh", "bh", "Why", "by", "h0", "x", "h", "z"}
    assert scope["oracle"].compare(grads, auto).ok


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "&& bptt verify" in text and "&& python -m pytest" in text
    assert "\npython -m pytest\n" in ci
