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


def test_module_example_runs_and_agrees_with_nn_rnn():
    code = re.search(r"## The module contract: torch.nn.RNN parity\n.*?```python\n(.*?)```", README.read_text(),
                     re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    g = scope["g"]
    assert g["weight_hh_l1_reverse"].shape == (4, 4) and g["h_l0_reverse"].shape == (6, 3, 4)
    assert list(g)[:len(scope["state_dict"])] == list(scope["state_dict"])


def test_the_repository_cites_nothing_outside_itself():
    import subprocess
    root = README.parent
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    if not files:  # not a git checkout (an sdist): look at what is here
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".py", ".md", ".toml")]
    # the names are split so that this file, scanned too, does not hold them either
    outside = ("sha" + "red/", "DES" + "IGN.md", "bptt" + "-notes")
    for name in files:
        path = root / name
        if path.suffix in (".py", ".md", ".toml", "") and path.is_file():
            text = path.read_text(errors="ignore")
            for word in outside:
                assert word not in text, f"{name} cites {word!r}, which a clone of this repository does not hold"


def test_the_readme_states_the_bound_the_code_uses():
    from oracle.compare import BOUND
    text = README.read_text()
    for term in ("C · eps · √(T·K) · amp", "REF_FACTOR · autograd_err", "COND_FACTOR · eps · sens", "MAX_TOL · scale"):
        assert term in text, term
    for term in ("C[dtype]*eps(dtype)*sqrt(T*K)*amp", "REF_FACTOR*autograd_err", "COND_FACTOR*eps(dtype)*sens",
                 "MAX_TOL*scale"):
        assert term in BOUND, term
