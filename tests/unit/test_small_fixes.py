"""Three small fixes: overflow without NumPy warnings, case-blind name suggestions, a bar that fits the terminal."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest

import manual
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES, NonFiniteGradientError, check_inputs
from oracle.progress import Progress

# ---------------------------------------------------------------- 1. overflow: the project's error, no warning


def params(H: int = 1, D: int = 1, O: int = 1, dtype=np.float64, **given) -> dict:  # noqa: E741
    p = {"Wxh": np.ones((H, D)), "Whh": np.zeros((H, H)), "bh": np.zeros(H), "Why": np.ones((O, H)),
         "by": np.zeros(O)}
    return {k: np.asarray(given.get(k, v), dtype) for k, v in p.items()}


def first_overflow(factor: float, start: float, T: int) -> int:
    """1-based count of multiplications by ``factor`` after which ``start`` stops being finite (float64)."""
    v = np.float64(start)
    with np.errstate(over="ignore"):
        for k in range(1, T + 1):
            v = v * factor + (1 if factor == 10 else 0)
            if not np.isfinite(v):
                return k
    raise AssertionError("no overflow")


def forward_overflow(fn=manual.gradients):
    """test_bad_input's case: identity, Whh = 10·I, h_t = 10 h_{t-1} + 1 overflows near t = 310."""
    T = 320
    return fn(params(Whh=10 * np.eye(1)), np.ones((T, 1, 1)), np.zeros((1, 1)), activation="identity")


def backward_overflow():
    """test_bad_input's case: h stays 0, dL/dh grows 1000× per step backward from dL/dh_T = −2."""
    return manual.gradients(params(Whh=1000 * np.eye(1)), np.zeros((150, 1, 1)), np.ones((1, 1)))


def sum_overflow():
    """test_bad_input's case: float32, every dL/dz_t finite, dWxh = Σ_t dz_tᵀ x_t is not."""
    T = 4
    return manual.gradients(params(dtype=np.float32), np.full((T, 1, 1), 1e19, np.float32),
                            np.zeros((T, 1, 1), np.float32), activation="identity", topology="many-to-many")


def huge(loss: str, scale: float, fn=manual.gradients, activation: str = "tanh", **weights):
    """T = 3, H = 4: h ≈ tanh(5) at every step, o = h Whyᵀ ≈ 4·scale."""
    T, B, H, O = 3, 2, 4, 3  # noqa: E741
    p = params(H=H, O=O, Wxh=np.full((H, 1), 5.0), Why=np.full((O, H), scale), **weights)
    y = np.zeros(B, np.int64) if loss == "cross_entropy" else np.zeros((B, O))
    return fn(p, np.ones((T, B, 1)), y, loss=loss, activation=activation)


OVERFLOWS = [  # (id, call, tensor, step)
    ("forward-pass", forward_overflow, "h (forward pass)", first_overflow(10, 0.0, 320)),
    ("forward-pass-of-forward", lambda: forward_overflow(manual.forward), "h (forward pass)",
     first_overflow(10, 0.0, 320)),
    ("backward-pass", backward_overflow, "dL/dh", 150 - first_overflow(1000, 2.0, 150)),
    ("sum-over-steps", sum_overflow, "Wxh", None),
    ("Whh-1e200-relu", lambda: huge("mse", 1.0, activation="relu", Whh=np.full((4, 4), 1e200)),
     "h (forward pass)", 3),
    ("mse-loss", lambda: huge("mse", 1e200), "dL/dh", 3),
    ("cross-entropy-loss", lambda: huge("cross_entropy", 1e308), "dL/dh", 3),
    ("forward-mse-loss", lambda: huge("mse", 1e200, manual.forward), "loss (forward pass)", 3),
    ("forward-bce-loss", lambda: huge("bce", 1e308, manual.forward), "loss (forward pass)", 3),
    ("forward-softmax", lambda: huge("cross_entropy", 1e308, manual.forward), "y (forward pass)", 3),
    ("seed-two-step-loss", lambda: manual.seed.two_step(
        params(H=4, O=3, Why=np.full((3, 4), 1e200)), np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 4)),
        np.zeros((1, 3))), "L", 2),
]


@pytest.mark.parametrize("run, tensor, t", [o[1:] for o in OVERFLOWS], ids=[o[0] for o in OVERFLOWS])
def test_overflow_is_the_projects_error_and_warns_nothing(run, tensor, t):
    before = np.geterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # record every warning instead of raising it
        with pytest.raises(NonFiniteGradientError) as info:
            run()
    assert [str(w.message) for w in seen] == []
    assert (info.value.tensor, info.value.t) == (tensor, t), str(info.value)
    assert np.geterr() == before


@pytest.mark.parametrize("run", [o[1] for o in OVERFLOWS[:4]], ids=[o[0] for o in OVERFLOWS[:4]])
def test_overflow_under_warnings_as_errors(run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteGradientError):
            run()


def test_callers_error_state_is_kept_and_restored():
    """A caller's seterr(all='raise') neither turns overflow into NumPy's error nor is lost afterwards."""
    with np.errstate(all="raise", under="warn"):
        state = np.geterr()
        with pytest.raises(NonFiniteGradientError):
            backward_overflow()
        assert np.geterr() == state
        with pytest.raises(ValueError, match="activation"):  # restored on a bad-input error as well
            manual.forward(params(), np.ones((2, 1, 1)), np.zeros((1, 1)), activation="tahn")
        assert np.geterr() == state
        # sigmoid of a huge z underflows exp(−|z|): fine, and no FloatingPointError from the caller's state
        g = huge("mse", 1.0, activation="sigmoid", Whh=np.full((4, 4), 1e200))
        assert all(np.isfinite(v).all() for v in g.values())
        assert np.geterr() == state


def test_input_check_of_huge_finite_numpy_input_warns_nothing():
    """Finite entries whose sum overflows are finite input: contract's check says nothing."""
    x = np.full((3, 2, 1), 1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = check_inputs(params(), x, np.zeros((2, 1)), None, "tanh", "mse", "many-to-one")
    assert (p.T, p.B) == (3, 2)


# ---------------------------------------------------------------- 2. name suggestions ignore case

SUGGESTIONS = [  # (argument, given, suggested, choices)
    ("activation", "ReLU", "relu", ACTIVATIONS),
    ("activation", "Tanh", "tanh", ACTIVATIONS),
    ("loss", "MSE", "mse", LOSSES),
    ("topology", "Many-To-One", "many-to-one", TOPOLOGIES),
    ("activation", "TAHN", "tanh", ACTIVATIONS),  # a typo and the case
    ("loss", "Cross_Entrpy", "cross_entropy", LOSSES),
]


@pytest.mark.parametrize("arg, given, suggested, choices", SUGGESTIONS, ids=[s[1] for s in SUGGESTIONS])
def test_suggestion_ignores_case(arg, given, suggested, choices):
    with pytest.raises(ValueError) as info:
        manual.gradients(params(), np.ones((2, 1, 1)), np.zeros((1, 1)), **{arg: given})
    msg = str(info.value)
    assert msg.startswith(f"{arg} must be one of"), msg
    assert f"did you mean {suggested!r}?" in msg and f"got {given!r}" in msg and "Remedy" in msg, msg
    assert all(repr(c) in msg for c in choices), msg


# ---------------------------------------------------------------- 3. the progress bar fits the terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(columns: int, names: list[str], monkeypatch) -> list[str]:
    """The lines a bar draws (the text between carriage returns and newlines) at ``columns`` columns."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = Terminal()
    bar = Progress(len(names), "verify", stream=out, enabled=True)
    for name in names:
        bar.step(name)
    return [line for line in re.split(r"[\r\n]", out.getvalue()) if line]


def test_progress_lines_fit_an_80_column_terminal(monkeypatch):
    lines = drawn(80, ["many-to-many/tanh/cross_entropy/" + "T=1000," * 20, "short"], monkeypatch)
    assert len(lines) == 2 and all(len(line) <= 79 for line in lines), [len(line) for line in lines]


def test_progress_keeps_what_fits_on_a_wide_terminal(monkeypatch):
    name = "x" * 300
    (line,) = drawn(200, [name], monkeypatch)
    assert len(line) == 199 and line.endswith("x" * (199 - line.index("x")))
    assert line.index("x") < 60  # the name starts right after the bar: ~140 of its characters are kept


# ------------------------------------------------------------------ an empty or non-finite truth vouches for nothing

def _seed_inputs(whh_scale: float, T: int = 5):
    from oracle.cases.seed import Case
    i = Case("many-to-one", "identity", "mse", T=T, B=2, D=3, H=4, O=2).inputs()
    return {**i, "params": {**i["params"], "Whh": np.eye(4) * whh_scale}}


def test_truth_that_overflows_raises_instead_of_returning_inf():
    import oracle
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteGradientError, match=r"the float64 truth"):
            oracle.truth(_seed_inputs(40.0, T=200),
                         {"activation": "identity", "loss": "mse", "topology": "many-to-one"})


@pytest.mark.parametrize("want, error, words", [({}, ValueError, "an empty one"), ([1.0], TypeError, "list")])
def test_compare_refuses_an_empty_truth(want, error, words):
    import oracle
    with pytest.raises(error, match=f"want must be a non-empty dict.*{words}.*Remedy"):
        oracle.compare({"Wxh": np.zeros(3)}, want)


def test_compare_refuses_a_truth_holding_inf():
    """An Inf in the truth makes its scale, and so every bound on it, infinite: zeros would pass."""
    import oracle
    want = {"Wxh": np.array([1.0, np.inf]), "Whh": np.ones(2)}
    with pytest.raises(ValueError, match=r"want\['Wxh'\] holds NaN or Inf.*Remedy"):
        oracle.compare({k: np.zeros(2) for k in want}, want)
