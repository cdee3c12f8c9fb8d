"""The pytest plugin (entry point ``pytest11``: installing bptt-reference is enough): a kernel project's own
tests, one pytest test per case.

    @pytest.mark.bptt_cases("module and LSTM and L1 and not bi and not p2")
    def test_my_lstm(bptt_case):
        oracle.assert_gradients(my_lstm_gradients, bptt_case)

``bptt_cases(expression=None, *, golden=None, layout=None, shard=None)``:
the built-in cases the ``-k`` expression selects (``oracle.cases.select``),
or the golden files in the folder ``golden`` (relative to the test file's
folder); ``layout``: the candidate's, "torch" or "onnx". The test is
parametrised through the ``bptt_case`` fixture with the case's name as its
id, so that ``pytest -k``, ``-x``, ``--lf`` and ``pytest-xdist -n`` work on
cases as on any test. A test that raises ``oracle.Unsupported`` is a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MARKER = "bptt_cases"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(expression=None, *, golden=None, layout=None, shard=None): "
                                       "parametrise the test's bptt_case over the cases selected (bptt-reference)")


def _selected(expression, golden, layout, shard, here: Path) -> list:
    """The Selected cases a marker asks for."""
    from oracle.assertions import Selected
    from oracle.cases import builtin_cases
    from oracle.cases.select import parse_shard, select, shard_of

    part = None if shard is None else parse_shard(shard)
    if golden is None:
        return [Selected(c, None, layout) for c in shard_of(select(builtin_cases(), expression), part)]
    from oracle.files.golden import load_golden

    folder = Path(golden) if Path(golden).is_absolute() else here / golden
    loaded = {load_golden(p)[0].name: p for p in sorted(folder.glob("*.safetensors"))}
    from oracle.cases import parse_case

    cases = shard_of(select([parse_case(n) for n in loaded], expression), part)
    return [Selected(c, str(loaded[c.name]), layout) for c in cases]


def pytest_generate_tests(metafunc) -> None:
    if "bptt_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        pytest.fail(f"{metafunc.definition.nodeid} takes bptt_case but has no @pytest.mark.{MARKER}(...) saying "
                    f"which cases. Remedy: e.g. @pytest.mark.{MARKER}(\"module and LSTM and L1\")", pytrace=False)
    expression = marker.args[0] if marker.args else marker.kwargs.get("expression")
    try:
        chosen = _selected(expression, marker.kwargs.get("golden"), marker.kwargs.get("layout"),
                           marker.kwargs.get("shard"), Path(metafunc.definition.fspath).parent)
    except ValueError as e:  # a malformed expression, a refused golden file
        pytest.fail(f"{metafunc.definition.nodeid}: {e}", pytrace=False)
    if not chosen and marker.kwargs.get("shard") is None:  # (a shard may be empty: its test is then skipped)
        pytest.fail(f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER}({expression!r}) selects no case. "
                    "Remedy: `bptt verify --list -k EXPRESSION` shows what an expression picks.", pytrace=False)
    metafunc.parametrize("bptt_case", chosen, ids=[str(s) for s in chosen])


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A candidate's ``oracle.Unsupported`` is the test's skip, with its reason."""
    from oracle.checker.candidate import Unsupported

    try:
        return (yield)
    except Unsupported as e:
        pytest.skip(f"unsupported: {e}")
