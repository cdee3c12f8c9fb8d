"""The README and the docs stay true: their Python examples run and pass, their links resolve, the numbers and
terms they quote are the code's, and nothing outside the repository is cited."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def example(page: str, heading: str) -> str:
    """The first ```python block after ``heading`` in ``page``."""
    text = (ROOT / page).read_text()
    return re.search(re.escape(heading) + r"\n.*?```python\n(.*?)```", text, re.S).group(1)


def run(code: str, where: str) -> dict:
    scope: dict = {}
    exec(compile(code, where, "exec"), scope)  # noqa: S102 - our own docs
    return scope


def test_python_api_example_runs():
    scope = run(example("docs/python-api.md", "# Python API"), "docs/python-api.md")
    grads, auto = scope["grads"], scope["auto"]
    assert set(grads) == set(auto) == {"Wxh", "Whh", "bh", "Why", "by", "h0", "x", "h", "z"}
    assert scope["oracle"].compare(grads, auto).ok


def test_module_example_runs_and_agrees_with_nn_rnn():
    scope = run(example("docs/module-contract.md", "# The module contract: torch.nn.RNN parity"),
                "docs/module-contract.md")
    g = scope["g"]
    assert g["weight_hh_l1_reverse"].shape == (4, 4) and g["h_l0_reverse"].shape == (6, 3, 4)
    assert list(g)[:len(scope["state_dict"])] == list(scope["state_dict"])


def test_every_python_block_is_tested():
    """A ```python block no test runs would be a claim nobody checks."""
    blocks = {str(p.relative_to(ROOT)): p.read_text().count("```python") for p in PAGES}
    assert {k: v for k, v in blocks.items() if v} == {"docs/python-api.md": 1, "docs/module-contract.md": 1,
                                                      "README.md": 1, "docs/kernel-tests.md": 2,
                                                      "docs/recurrences.md": 2}


def test_the_recurrence_example_runs_and_agrees_with_autograd():
    import torch

    from oracle.judge import compare
    from reference.recurrence import unrolled_recurrence_gradients

    scope = run(python_blocks(ROOT / "docs" / "recurrences.md")[0], "docs/recurrences.md")
    grads = scope["grads"]
    assert list(grads) == ["q", "k", "v", "g", "beta", "initial_state", "S"] and grads["S"].shape == (1, 9, 4, 8, 6)
    want = unrolled_recurrence_gradients(
        "gated_delta_rule", *(torch.from_numpy(scope[n]) for n in ("q", "k", "v", "g", "beta")),
        initial_state=torch.from_numpy(scope["h0"]), cu_seqlens=[0, 1, 5, 8], use_qk_l2norm=True,
        grad_o=torch.from_numpy(scope["do"]))
    assert compare(grads, {n: w.numpy() for n, w in want.items()}).ok and not grads["S"][0, 8].any()


def test_the_recurrence_wrapper_block_is_the_example():
    """The recurrence page's wrapper is examples/recurrence_wrapper.py's, which tests/unit/test_plugin.py runs."""
    example = (ROOT / "examples" / "recurrence_wrapper.py").read_text()
    for line in python_blocks(ROOT / "docs" / "recurrences.md")[1].splitlines():
        assert line.split("#")[0].strip() in example, f"{line!r} is not in the example"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def test_the_plugin_blocks_are_the_example_project():
    """The README's and the kernel page's test file are the example's, which tests/unit/test_plugin.py runs."""
    example = (ROOT / "examples" / "kernel_project" / "tests" / "test_my_lstm.py").read_text()
    for block in (python_blocks(README)[0], python_blocks(ROOT / "docs" / "kernel-tests.md")[0]):
        for line in block.splitlines():
            assert line.split("#")[0].strip() in example, f"{line!r} is not in the example project"


def test_the_unsupported_block_skips_what_it_declares_and_raises():
    from oracle.checker.run import check

    scope: dict = {}
    exec(python_blocks(ROOT / "docs" / "kernel-tests.md")[1], scope)  # noqa: S102 - the page's own example
    result = check(scope["lstm_gradients"], "module/LSTM and L1 and T5-B3 and float64", isolate=False)
    reasons = {r.skipped for r in result.skipped}
    assert result.ok and reasons == {"lengths", "proj_size", "zoneout"}, result.summary()  # zoneout: no parameter


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "&& bptt verify" in text and "&& python -m pytest" in text
    assert "\npython -m pytest\n" in ci


def test_the_readme_is_an_entrance():
    """At most 250 lines; every docs page is linked from it."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for page in DOCS:
        assert f"(docs/{page.name})" in text, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_and_test_file_named_exists(page):
    """`oracle/x.py`, `tests/test_y.py`, `benchmarks/z.py` … quoted in a page are files of the repository."""
    for path in set(re.findall(r"`((?:oracle|manual|reference|contract|tests|benchmarks)/[\w/]+\.(?:py|sh))`",
                               page.read_text())):
        assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_the_repository_cites_nothing_outside_itself():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:  # not a git checkout (an sdist): look at what is here
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".toml")]
    # the names are split so that this file, scanned too, does not hold them either
    outside = ("sha" + "red/", "DES" + "IGN.md", "bptt" + "-notes")
    for name in files:
        path = ROOT / name
        if path.suffix in (".py", ".md", ".toml", "") and path.is_file():
            text = path.read_text(errors="ignore")
            for word in outside:
                assert word not in text, f"{name} cites {word!r}, which a clone of this repository does not hold"


def test_the_policy_page_states_the_bound_the_code_uses():
    from oracle.policy import BOUND, GOLDEN_AGREE, MAX_TOL, REF_FACTOR, C

    text = " ".join((ROOT / "docs" / "policy.md").read_text().split())
    sci = lambda x: f"{x:.0e}".replace("e-0", "e-")  # noqa: E731 - 1e-2, as the page writes it
    for term in ("C · eps · √(T·K) · amp", "REF_FACTOR · autograd_err", "COND_FACTOR · eps · sens", "MAX_TOL · scale"):
        assert term in text, term
    for term in ("C[dtype]*eps(dtype)*sqrt(T*K)*amp", "REF_FACTOR*autograd_err", "COND_FACTOR*eps(dtype)*sens",
                 "MAX_TOL*scale"):
        assert term in BOUND, term
    assert f"`MAX_TOL = {sci(MAX_TOL)}`" in text and f"C = {C['float64']:g}" in text
    assert f"at most {REF_FACTOR:g}× autograd's" in text and f"| `GOLDEN_AGREE` | {sci(GOLDEN_AGREE)} |" in text


def test_the_policy_is_stated_once():
    """The formula is written out in docs/policy.md alone; other pages link to it."""
    formula = "REF_FACTOR · autograd_err"
    holders = [p.name for p in PAGES if formula in p.read_text()]
    assert holders == ["policy.md"], holders


def test_the_counts_the_docs_quote_are_the_catalogues():
    from oracle.cases import builtin_cases, select
    from oracle.cases.module import all_module_cases, parity_matrix
    from oracle.cases.recurrence import all_recurrence_cases
    from oracle.cases.seed import all_cases

    def says(page: str, text: str) -> bool:
        return text in " ".join((ROOT / page).read_text().split())

    assert len(select(builtin_cases(), "module/LSTM/L1")) == 252 and says("README.md", "# 252 golden cases")
    assert len(all_cases()) == 360 and says("docs/cli.md", "float64 and float32: 360 cases")
    assert 2 * len(parity_matrix("RNN_TANH")) == 576 and says("docs/cli.md", "cell's 576 configurations")
    assert len(all_module_cases(("float64", "float32"))) == 4512 and says("docs/cli.md", "4,512 cases")
    assert len(all_module_cases()) == 4614 and says("docs/cli.md", "4,614 in all")
    assert len(all_recurrence_cases(("float64", "float32"))) == 498 and says("docs/cli.md", "float32: 498 cases")
    assert len(all_recurrence_cases()) == 534 and says("docs/cli.md", "534 in all")
    assert says("README.md", "-k recurrence` writes 534 golden") and says("docs/recurrences.md", "(498 cases)")
    assert len(builtin_cases()) == 5508 and says("docs/checker.md", "without -k: all 5,508")
