"""Choosing a backend of manual.gradients: numba (manual.compiled) or array-api; bad choices are clear errors.

That both backends compute the right gradients is what the rest of the suite shows: every test of
manual.gradients runs once per backend present (conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from manual import compiled
from oracle.cases.seed import Case

needs_numba = pytest.mark.skipif(not compiled.available(), reason="numba / SciPy (the `fast` extra) not installed")
CASE = Case("many-to-many", "tanh", "mse", T=6, B=2, D=3, H=4, O=2)


def args(case=CASE, lib="numpy"):
    i = case.inputs()
    if lib == "torch":
        i = {"params": {k: torch.from_numpy(v) for k, v in i["params"].items()}, "x": torch.from_numpy(i["x"]),
             "target": torch.from_numpy(i["target"]), "h0": torch.from_numpy(i["h0"])}
    return (i["params"], i["x"], i["target"]), {"h0": i["h0"], **case.kwargs}


@pytest.fixture
def no_default():
    """No use_backend block in force (conftest sets one for every test): BPTT_BACKEND decides."""
    token = manual.bptt._default_backend.set(None)
    yield
    manual.bptt._default_backend.reset(token)


def spy(monkeypatch) -> list:
    calls = []
    real = compiled.seed_gradients
    monkeypatch.setattr(compiled, "seed_gradients", lambda *a: calls.append(1) or real(*a))
    return calls


@needs_numba
@pytest.mark.parametrize("backend, used", [("numba", 1), ("array-api", 0), ("auto", 1)])
def test_the_backend_asked_for_runs(monkeypatch, backend, used):
    calls = spy(monkeypatch)
    a, kw = args()
    manual.gradients(*a, **kw, backend=backend)
    assert len(calls) == used


@needs_numba
def test_auto_picks_array_api_where_numba_does_not_pay(monkeypatch):
    calls = spy(monkeypatch)
    a, kw = args(Case("many-to-one", "tanh", "mse", T=3, B=8, D=3, H=64, O=2))
    assert not compiled.pays(8, 64) and compiled.pays(1, 32) and compiled.pays(1, 512)
    manual.gradients(*a, **kw, backend="auto")
    assert calls == []


@needs_numba
def test_use_backend_and_the_environment_set_the_default(monkeypatch, no_default):
    calls = spy(monkeypatch)
    a, kw = args()
    monkeypatch.setenv("BPTT_BACKEND", "array-api")
    manual.gradients(*a, **kw)
    assert calls == []
    with manual.use_backend("numba"):
        manual.gradients(*a, **kw)
    assert len(calls) == 1
    manual.gradients(*a, **kw)  # the block ended: the environment's choice again
    assert len(calls) == 1


def test_a_numba_default_leaves_torch_input_to_array_api():
    a, kw = args(lib="torch")
    with manual.use_backend("numba"):
        g = manual.gradients(*a, **kw)
    assert isinstance(g["Whh"], torch.Tensor)


def test_unknown_backend_is_a_value_error():
    a, kw = args()
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', 'numba', 'array-api'; got 'cuda'.*Remedy"):
        manual.gradients(*a, **kw, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        manual.use_backend("fast").__enter__()


def test_bad_environment_variable_is_named(monkeypatch, no_default):
    a, kw = args()
    monkeypatch.setenv("BPTT_BACKEND", "numpy")
    with manual.use_backend("array-api"):  # an explicit default wins over the environment
        manual.gradients(*a, **kw)
    with pytest.raises(ValueError, match="the environment variable BPTT_BACKEND must be one of.*'numpy'"):
        manual.gradients(*a, **kw)


@needs_numba
def test_numba_on_torch_input_is_a_type_error():
    a, kw = args(lib="torch")
    with pytest.raises(TypeError, match=r"backend='numba' computes on NumPy float32 or float64.*torch.*Remedy"):
        manual.gradients(*a, **kw, backend="numba")


@needs_numba
def test_numba_on_float16_is_a_type_error():
    i = CASE.inputs()
    p = {k: v.astype(np.float16) for k, v in i["params"].items()}
    with pytest.raises(TypeError, match="float16.*backend='auto'"):
        manual.gradients(p, i["x"].astype(np.float16), i["target"].astype(np.float16), backend="numba",
                         topology="many-to-many")


def test_numba_missing_is_a_value_error_with_the_install_remedy(monkeypatch):
    monkeypatch.setattr(compiled, "available", lambda: False)
    a, kw = args()
    with pytest.raises(ValueError, match=r"pip install 'bptt-reference\[fast\]', or backend='array-api'"):
        manual.gradients(*a, **kw, backend="numba")
    assert manual.gradients(*a, **kw, backend="auto")["Whh"].shape == (4, 4)  # auto: array-api without it


@needs_numba
def test_overflow_gives_the_same_error_on_both_backends():
    """numba hands a non-finite result to the array-API backend, so the error names the same step."""
    case = Case("many-to-many", "identity", "mse", T=40, B=2, D=3, H=4, O=2)
    a, kw = args(case)
    a[0]["Whh"] = np.eye(4) * 1e9
    msgs = []
    for backend in ("numba", "array-api"):
        with pytest.raises(manual.NonFiniteGradientError) as e:
            manual.gradients(*a, **kw, backend=backend)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


@needs_numba
@pytest.mark.parametrize("topology", ["many-to-one", "many-to-many", "one-to-many"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
def test_backends_agree_shape_dtype_values(topology, loss, activation):
    """Both backends, the same inputs: shape, then dtype, then values (float64: a few ulps of each other)."""
    case = Case(topology, activation, loss, T=9, B=2, D=3, H=5, O=3)
    a, kw = args(case)
    n, r = (manual.gradients(*a, **kw, backend=b) for b in ("numba", "array-api"))
    assert n.keys() == r.keys()
    for k in r:
        assert n[k].shape == r[k].shape, k
        assert n[k].dtype == r[k].dtype, k
        scale = np.abs(r[k]).max() or 1.0
        # float64, T = 9: the two sum products in different orders; 1e-13 is ~500 ulps of the scale
        assert np.abs(n[k] - r[k]).max() <= 1e-13 * scale, k


def test_a_numba_default_without_numba_falls_back(monkeypatch, no_default):
    """A default (use_backend, BPTT_BACKEND) applies where it can; only backend="numba" insists."""
    monkeypatch.setattr(compiled, "available", lambda: False)
    a, kw = args()
    monkeypatch.setenv("BPTT_BACKEND", "numba")
    assert manual.gradients(*a, **kw)["Whh"].shape == (4, 4)
    with manual.use_backend("numba"):
        assert manual.gradients(*a, **kw)["Whh"].shape == (4, 4)


def test_an_empty_environment_variable_is_unset(monkeypatch, no_default):
    a, kw = args()
    monkeypatch.setenv("BPTT_BACKEND", "")
    assert manual.gradients(*a, **kw)["Whh"].shape == (4, 4)


@needs_numba
def test_read_only_and_fortran_inputs_give_the_same_result():
    """Copied to C-contiguous writable arrays before the compiled call (one numba signature, not one per flag)."""
    a, kw = args()
    want = manual.gradients(*a, **kw, backend="numba")
    params = {k: np.asfortranarray(v) for k, v in a[0].items()}
    for v in params.values():
        v.flags.writeable = False
    x = a[1].copy()
    x.flags.writeable = False
    got = manual.gradients(params, x, a[2], **kw, backend="numba")
    assert all(np.array_equal(got[k], want[k]) for k in want)
