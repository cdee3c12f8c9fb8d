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

from contract.errors import BadValue

MARKER = "bptt_cases"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(expression=None, *, golden=None, layout=None, shard=None): "
                                       "parametrise the test's bptt_case over the cases selected (bptt-reference)")


KEYWORDS = ("expression", "golden", "layout", "shard")


def _selected(expression, golden, layout, shard, here: Path) -> list:
    """The Selected cases a marker asks for (ValueError naming what is wrong with it)."""
    from oracle.assertions import Selected
    from oracle.cases import builtin_cases
    from oracle.cases.select import parse_shard, select, shard_of
    from oracle.layouts import check_layout

    part = None if shard is None else parse_shard(shard)
    if layout is not None:
        check_layout(layout)
    if golden is None:
        return [Selected(c, None, layout) for c in shard_of(select(builtin_cases(), expression), part)]
    from oracle.files.golden import load_golden

    folder = Path(golden) if Path(golden).is_absolute() else here / golden
    paths = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not paths:
        raise BadValue(f"golden={golden!r} (resolved relative to the test file: {folder}) "
                       f"{'holds no .safetensors golden cases' if folder.is_dir() else 'is not a folder'}",
                       f"`bptt export {folder}` writes golden cases there, or give the folder's path")
    loaded = {case.name: (case, str(p)) for p in paths for case in (load_golden(p)[0],)}
    cases = shard_of(select([c for c, _ in loaded.values()], expression), part)
    return [Selected(c, loaded[c.name][1], layout) for c in cases]


def _marker_arguments(marker, nodeid: str) -> dict:
    """The marker's arguments by name; a collection error for an unknown keyword or an extra argument (which
    would otherwise select other cases than the user meant, silently)."""
    unknown = sorted(set(marker.kwargs) - set(KEYWORDS))
    if len(marker.args) > 1 or unknown or (marker.args and "expression" in marker.kwargs):
        pytest.fail(f"{nodeid}: @pytest.mark.{MARKER} takes one expression and the keywords {KEYWORDS}; got "
                    f"{len(marker.args)} positional argument(s)" + (f" and {unknown}" if unknown else "") +
                    ". Remedy: one expression joined with and/or/not, e.g. "
                    f"@pytest.mark.{MARKER}(\"GRU and H8 and float64\", golden=\"golden\")", pytrace=False)
    args = {k: marker.kwargs.get(k) for k in KEYWORDS}
    if marker.args:
        args["expression"] = marker.args[0]
    return args


def pytest_generate_tests(metafunc) -> None:
    if "bptt_case" not in metafunc.fixturenames:
        return
    nodeid = metafunc.definition.nodeid
    markers = list(metafunc.definition.iter_markers(MARKER))
    if len(markers) > 1:
        pytest.fail(f"{nodeid} has {len(markers)} @pytest.mark.{MARKER} markers (on the test, its class or its "
                    "module); only one would count. Remedy: one marker, its expressions joined with or.",
                    pytrace=False)
    marker = markers[0] if markers else None
    if marker is None:
        pytest.fail(f"{nodeid} takes bptt_case but has no @pytest.mark.{MARKER}(...) saying which cases. Remedy: "
                    f"e.g. @pytest.mark.{MARKER}(\"module and LSTM and L1\")", pytrace=False)
    args = _marker_arguments(marker, nodeid)
    try:
        chosen = _selected(**args, here=Path(metafunc.definition.fspath).parent)
        failed = ""
    except ValueError as e:  # a malformed expression or shard, an unknown layout, a missing or refused golden file
        failed = f"{nodeid}: {e}"
    if failed:  # (outside the except: pytest shows the message alone, not the exception it came from)
        pytest.fail(failed, pytrace=False)
    if not chosen and args["shard"] is None:  # (a shard may be empty: its test is then skipped)
        pytest.fail(f"{nodeid}: @pytest.mark.{MARKER}({args['expression']!r}) selects no case. Remedy: "
                    "`bptt verify --list -k EXPRESSION` (or `bptt check DIR --list -k …`) shows what it picks; "
                    "words are case-sensitive.", pytrace=False)
    metafunc.parametrize("bptt_case", chosen, ids=[str(s) for s in chosen])


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A candidate's ``oracle.Unsupported`` is the test's skip, with its reason."""
    from oracle.checker.candidate import Unsupported

    try:
        return (yield)
    except Unsupported as e:
        pytest.skip(f"unsupported: {e}")
