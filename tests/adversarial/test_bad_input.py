"""Bad input: each gets a ValueError or TypeError naming the argument, the expected and the actual value."""

import numpy as np
import pytest
import torch

import manual
import reference
import reference.module
from contract import NonFiniteGradientError
from contract.errors import Refusal
from oracle.cases.seed import Case

ENTRY_POINTS = [manual.gradients, manual.forward, reference.gradients, reference.nn_rnn_gradients]


def good(topology="many-to-one", loss="mse"):
    i = Case(topology, "tanh", loss, T=3, B=2, D=4, H=5, O=3).inputs()
    return i["params"], i["x"], i["target"], {"h0": i["h0"], "loss": loss, "topology": topology}


def with_param(name, value):
    p, x, y, kw = good()
    return {**p, name: value}, x, y, kw


def edit(**changes):
    p, x, y, kw = good()
    args = {"params": p, "x": x, "target": y, **kw}
    args.update(changes)
    kw = {k: args[k] for k in ("h0", "loss", "topology", "activation") if k in args}
    return args["params"], args["x"], args["target"], kw


def ce(**changes):
    p, x, y, kw = good(loss="cross_entropy")
    return edit(params=p, x=x, target=changes.pop("target", y), loss="cross_entropy", **changes)


P, X, Y, KW = good()
BAD = [  # (id, arguments, exception, words the message must hold)
    ("params-not-mapping", ([P["Wxh"]], X, Y, KW), TypeError, ["params", "mapping", "list"]),
    ("params-missing-key", ({k: v for k, v in P.items() if k != "Why"}, X, Y, KW), ValueError,
     ["params", "missing", "Why", "weight_ih_l0"]),
    ("params-extra-key", ({**P, "W": P["Whh"]}, X, Y, KW), ValueError, ["unexpected", "'W'"]),
    ("param-is-list", with_param("bh", [0.0] * 5), TypeError, ["params['bh']", "array", "list"]),
    ("param-integer-dtype", with_param("Wxh", P["Wxh"].astype(np.int64)), TypeError,
     ["params['Wxh']", "int64", "astype"]),
    ("param-mixed-dtype", with_param("Whh", P["Whh"].astype(np.float32)), TypeError,
     ["params['Whh']", "float32", "float64"]),
    ("param-wrong-shape", with_param("Whh", P["Whh"][:, :4]), ValueError, ["params['Whh']", "(5, 5)", "(5, 4)"]),
    ("param-transposed", with_param("Why", P["Why"].T), ValueError, ["params['Why']", "(3, 5)", "(5, 3)"]),
    ("by-wrong", with_param("by", P["by"][:2]), ValueError, ["params['Why']", "(2, 5)", "(3, 5)"]),
    ("by-2d", with_param("by", P["by"][None]), ValueError, ["params['by']", "1-D", "(1, 3)"]),
    ("Wxh-1d", with_param("Wxh", P["Wxh"].ravel()), ValueError, ["params['Wxh']", "2-D", "(20,)"]),
    ("H-zero", with_param("Wxh", np.zeros((0, 4))), ValueError, ["H", "0"]),
    ("param-nan", with_param("Whh", np.where(np.eye(5) > 0, np.nan, P["Whh"])), ValueError,
     ["params['Whh']", "finite", "NaN", "(0, 0)"]),
    ("param-inf", with_param("by", np.array([0.0, np.inf, 0.0])), ValueError, ["params['by']", "finite", "(1,)"]),
    ("mixed-library", with_param("bh", torch.zeros(5, dtype=torch.float64)), TypeError,
     ["params['bh']", "torch", "numpy", "one library"]),
    ("T-zero", edit(x=X[:0]), ValueError, ["x", "T", "0"]),
    ("B-zero", edit(x=X[:, :0], target=Y[:0], h0=KW["h0"][:0]), ValueError, ["x", "B", "0"]),
    ("x-2d", edit(x=X[0]), ValueError, ["x", "3-D", "(2, 4)"]),
    ("x-wrong-D", edit(x=X[..., :3]), ValueError, ["x", "(3, 2, 4)", "(3, 2, 3)"]),
    ("x-int", edit(x=X.astype(np.int32)), TypeError, ["x", "int32", "float64"]),
    ("x-nan", edit(x=np.where(X > 1, np.nan, X)), ValueError, ["x", "finite"]),
    ("x-list", edit(x=X.tolist()), TypeError, ["x", "array", "list"]),
    ("x-masked-hiding-nan", edit(x=np.ma.masked_invalid(np.where(X > 1, np.nan, X))), TypeError,
     ["x", "masked array", "x.filled(value)"]),
    ("target-shape", edit(target=Y[:, :2]), ValueError, ["target", "(2, 3)", "(2, 2)"]),
    ("target-int-for-mse", edit(target=np.zeros((2, 3), dtype=np.int64)), TypeError, ["target", "int64"]),
    ("target-stepped-missing-T", edit(topology="many-to-many"), ValueError, ["target", "(3, 2, 3)", "(2, 3)"]),
    ("h0-shape", edit(h0=KW["h0"].T), ValueError, ["h0", "(2, 5)", "(5, 2)"]),
    ("h0-dtype", edit(h0=KW["h0"].astype(np.float32)), TypeError, ["h0", "float32"]),
    ("activation-unknown", edit(activation="tahn"), ValueError, ["activation", "'tahn'", "did you mean 'tanh'"]),
    ("activation-not-str", edit(activation=np.tanh), TypeError, ["activation", "str"]),
    ("loss-unknown", edit(loss="nll"), ValueError, ["loss", "'nll'", "'cross_entropy'"]),
    ("topology-unknown", edit(topology="many_to_one"), ValueError,
     ["topology", "did you mean 'many-to-one'"]),
    ("ce-float-target", ce(target=np.zeros(2)), TypeError, ["target", "integer", "float64", "int64"]),
    ("ce-class-out-of-range", ce(target=np.array([1, 3])), ValueError, ["target", "[0, 3)", "3", "(1,)"]),
    ("ce-negative-class", ce(target=np.array([-1, 0])), ValueError, ["target", "-1", "(0,)"]),
    ("bce-outside-0-1", edit(loss="bce", target=Y + 5), ValueError, ["target", "[0, 1]"]),
    ("one-to-many-x-3d", edit(topology="one-to-many", target=np.stack([Y] * 3)), ValueError,
     ["x", "2-D", "one-to-many", "x[0]"]),
]


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda f: f"{f.__module__}.{f.__name__}")
@pytest.mark.parametrize("args, exc, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_named(fn, args, exc, words):
    params, x, target, kw = args
    with pytest.raises(exc) as info:
        fn(params, x, target, **kw)
    msg = str(info.value)
    assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda f: f"{f.__module__}.{f.__name__}")
@pytest.mark.parametrize("kind, to, words", [("meta", lambda t: t.to("meta"), ["'meta' device", "'cpu'"]),
                                             ("sparse", lambda t: t.to_sparse(), ["sparse_coo", "x.to_dense()"])])
def test_tensors_without_plain_numbers_are_named(fn, kind, to, words):
    p, x, y, kw = good()
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    params = {k: t(v) for k, v in p.items()}
    if kind == "meta":  # every argument there: the one library, the one device, and still no numbers
        params = {k: to(v) for k, v in params.items()}
    with pytest.raises(TypeError) as info:
        fn(params, to(t(x)), t(y) if kind == "sparse" else to(t(y)), h0=t(kw["h0"]) if kind == "sparse" else
           to(t(kw["h0"])))
    msg = str(info.value)
    assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"


def test_nn_rnn_refuses_activations_it_lacks():
    with pytest.raises(ValueError, match="sigmoid.*Remedy: use reference.gradients"):
        reference.nn_rnn_gradients(P, X, Y, activation="sigmoid")


def test_remedy_of_integer_dtype_works():
    """The remedy the message gives (astype float64) makes the call succeed."""
    p = {**P, "Wxh": P["Wxh"].astype(np.int64)}
    with pytest.raises(TypeError):
        manual.gradients(p, X, Y)
    manual.gradients({**p, "Wxh": p["Wxh"].astype(np.float64)}, X, Y)


def test_forward_overflow_names_the_first_step():
    """identity activation, Whh = 10·I: h_t grows like 10^t and overflows float64 near t = 308."""
    T, B, D, H, O = 320, 1, 1, 1, 1
    params = {"Wxh": np.ones((H, D)), "Whh": 10 * np.eye(H), "bh": np.zeros(H),
              "Why": np.ones((O, H)), "by": np.zeros(O)}
    x = np.ones((T, B, D))
    h, expected = 0.0, None
    with np.errstate(over="ignore"):
        for t in range(1, T + 1):  # h_t = 10 h_{t-1} + 1 in float64
            h = np.float64(10) * h + 1
            if expected is None and not np.isfinite(h):
                expected = t
        with pytest.raises(NonFiniteGradientError) as info:
            manual.gradients(params, x, np.zeros((B, O)), activation="identity")
    assert info.value.tensor.startswith("h") and info.value.t == expected, str(info.value)
    assert f"t={expected}" in str(info.value)


def test_backward_overflow_names_the_first_step():
    """Forward stays at 0 (act' = 1), backward multiplies dL/dh by 1000 per step: overflow past ~100 steps."""
    T, B, H = 150, 1, 1
    params = {"Wxh": np.ones((H, 1)), "Whh": 1000 * np.eye(H), "bh": np.zeros(H),
              "Why": np.ones((1, H)), "by": np.zeros(1)}
    x, y = np.zeros((T, B, 1)), np.ones((B, 1))
    with np.errstate(over="ignore", invalid="ignore"):
        auto = reference.gradients(params, x, y)["h"]  # autograd does not stop: it returns inf
        first_bad = max(t for t in range(T) if not np.isfinite(auto[t]).all()) + 1
        with pytest.raises(NonFiniteGradientError) as info:
            manual.gradients(params, x, y)
    assert info.value.tensor == "dL/dh" and info.value.t == first_bad, str(info.value)


def test_overflow_in_a_sum_over_steps_is_reported():
    """float32: every dL/dz_t finite, but dWhh = Σ_t dz_tᵀ h_{t-1} overflows; reported, not returned as inf."""
    T, B, D, H, O = 4, 1, 1, 1, 1
    params = {"Wxh": np.ones((H, D), np.float32), "Whh": np.zeros((H, H), np.float32),
              "bh": np.zeros(H, np.float32), "Why": np.ones((O, H), np.float32), "by": np.zeros(O, np.float32)}
    x = np.full((T, B, D), 1e19, np.float32)  # h_t = 1e19, dL/dz_t = 2e19: finite; Σ_t dz_t x_t = 8e38: not
    y = np.zeros((T, B, O), np.float32)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(NonFiniteGradientError) as info:
        manual.gradients(params, x, y, activation="identity", topology="many-to-many")
    assert info.value.tensor == "Wxh" and info.value.t is None, str(info.value)
    assert "sum over time steps" in str(info.value) and "Remedy" in str(info.value)


def test_compare_fails_inf_where_truth_is_finite_even_if_autograd_overflowed():
    from oracle.judge import compare
    want = {"Wxh": np.ones((2, 2)), "Why": np.ones((1, 2))}
    got = {"Wxh": np.array([[1.0, np.inf], [1.0, 1.0]]), "Why": np.ones((1, 2))}
    report = compare(got, want, ref={"Wxh": np.full((2, 2), np.inf), "Why": np.ones((1, 2))})
    assert not report.ok and report["Wxh"].nonfinite == 1 and report["Wxh"].mismatched == 1


# ------------------------------------------------------------------ the module contract

def module_args(**changes):
    from oracle.cases.module import ModuleCase
    i = ModuleCase("RNN_TANH", 2, True, False, True, 4, 3, 3, 5).inputs()
    args = {"config": i["config"], "state_dict": i["state_dict"], "input": i["input"], "hx": i["hx"],
            "grad_output": i["grad_output"], "grad_hn": i["grad_hn"], "lengths": None, "grad_cn": None}
    args.update(changes)
    return args


MI = module_args()
SD = MI["state_dict"]
MODULE_BAD = [  # (id, changes, exception, words)
    ("config-not-dict", {"config": ["RNN_TANH"]}, TypeError, ["config", "dict", "list"]),
    ("mode-unknown", {"config": {**MI["config"], "mode": "MGU"}}, ValueError, ["mode", "'MGU'", "RNN_TANH", "LSTM"]),
    ("mode-case", {"config": {**MI["config"], "mode": "rnn_relu"}}, ValueError, ["did you mean 'RNN_RELU'"]),
    ("config-unknown-key", {"config": {**MI["config"], "peephole": True}}, ValueError, ["peephole", "unknown"]),
    ("proj-not-lstm", {"config": {**MI["config"], "proj_size": 2}}, ValueError, ["proj_size", "'LSTM'", "[1, 5)"]),
    ("lbr-not-gru", {"config": {**MI["config"], "linear_before_reset": False}}, ValueError,
     ["linear_before_reset", "GRU"]),
    ("grad-cn-not-lstm", {"grad_cn": MI["grad_hn"]}, ValueError, ["grad_cn", "no cell state"]),
    ("norm-of-one-unit", {"config": {**MI["config"], "mode": "LNLSTM", "hidden_size": 1}}, ValueError,
     ["hidden_size", "at least 2", "'LNLSTM'", "got 1"]),
    ("heads-not-slstm", {"config": {**MI["config"], "num_heads": 5}}, ValueError, ["num_heads", "sLSTM", "'SLSTM'"]),
    ("forget-gate-not-slstm", {"config": {**MI["config"], "forget_gate": "exp"}}, ValueError,
     ["forget_gate", "sLSTM"]),
    ("nonlinearity-contradicts", {"config": {**MI["config"], "nonlinearity": "relu"}}, ValueError,
     ["nonlinearity", "RNN_TANH"]),
    ("dropout", {"config": {**MI["config"], "dropout": 0.5}}, ValueError, ["dropout", "0.5"]),
    ("hidden-zero", {"config": {**MI["config"], "hidden_size": 0}}, ValueError, ["hidden_size", "positive"]),
    ("flag-not-bool", {"config": {**MI["config"], "bias": 1}}, TypeError, ["bias", "True or False"]),
    ("missing-key", {"state_dict": {k: v for k, v in SD.items() if k != "bias_hh_l1_reverse"}}, ValueError,
     ["bias_hh_l1_reverse", "missing"]),
    ("extra-key", {"state_dict": {**SD, "weight_hr_l0": SD["weight_hh_l0"]}}, ValueError,
     ["weight_hr_l0", "unexpected"]),
    ("weight-transposed", {"state_dict": {**SD, "weight_ih_l0": SD["weight_ih_l0"].T}}, ValueError,
     ["weight_ih_l0", "(5, 3)", "(3, 5)"]),
    ("layer1-input-size", {"state_dict": {**SD, "weight_ih_l1": SD["weight_ih_l1"][:, :5]}}, ValueError,
     ["weight_ih_l1", "(5, 10)", "(5, 5)"]),
    ("weight-int", {"state_dict": {**SD, "weight_hh_l0": SD["weight_hh_l0"].astype(np.int64)}}, TypeError,
     ["weight_hh_l0", "int64"]),
    ("mixed-dtype", {"input": MI["input"].astype(np.float32)}, TypeError, ["input", "float32", "float64"]),
    ("mixed-library", {"hx": torch.from_numpy(MI["hx"])}, TypeError, ["hx", "torch", "one library"]),
    ("input-2d", {"input": MI["input"][0]}, ValueError, ["input", "3-D", "(3, 3)"]),
    ("input-size", {"input": MI["input"][..., :2]}, ValueError, ["input", "(4, 3, 3)", "(4, 3, 2)"]),
    ("T-zero", {"input": MI["input"][:0], "grad_output": MI["grad_output"][:0]}, ValueError, ["input", "T", "0"]),
    ("hx-shape", {"hx": MI["hx"][:2]}, ValueError, ["hx", "(4, 3, 5)", "(2, 3, 5)"]),
    ("grad-output-shape", {"grad_output": MI["grad_output"][..., :5]}, ValueError,
     ["grad_output", "(4, 3, 10)", "(4, 3, 5)"]),
    ("grad-hn-shape", {"grad_hn": MI["grad_hn"][0]}, ValueError, ["grad_hn", "(4, 3, 5)", "(3, 5)"]),
    ("no-upstream", {"grad_output": None, "grad_hn": None}, ValueError, ["grad_output", "grad_hn", "both None"]),
    ("input-nan", {"input": np.where(MI["input"] > 1, np.nan, MI["input"])}, ValueError, ["input", "finite"]),
    ("lengths-float", {"lengths": np.array([1.0, 2.0, 3.0])}, TypeError, ["lengths", "integers", "float64"]),
    ("lengths-count", {"lengths": [4, 4]}, ValueError, ["lengths", "B = 3", "2"]),
    ("lengths-zero", {"lengths": [4, 0, 2]}, ValueError, ["lengths", "[1, 4]", "0", "row 1"]),
    ("lengths-past-T", {"lengths": [4, 5, 2]}, ValueError, ["lengths", "[1, 4]", "5"]),
    ("lengths-kind", {"lengths": "4,4,4"}, TypeError, ["lengths", "str"]),
    ("input-masked", {"input": np.ma.masked_array(MI["input"])}, TypeError, ["input", "masked array"]),
    ("lengths-masked", {"lengths": np.ma.masked_array([4, 1, 3], mask=[0, 1, 0])}, TypeError,
     ["lengths", "masked array"]),
]
LSTM_BAD = [  # (id, edit of (hx, grad_cn) of an LSTM case with proj_size 3, exception, words)
    ("hx-not-pair", lambda hx, gcn: ("h0", gcn), TypeError, ["hx", "(h0, c0)", "str"]),
    ("c0-shape", lambda hx, gcn: ((hx[0], hx[1][:1]), gcn), ValueError, ["hx[1]", "(2, 3, 5)", "(1, 3, 5)"]),
    ("h0-not-projected", lambda hx, gcn: ((np.zeros((2, 3, 5)), hx[1]), gcn), ValueError,
     ["hx[0]", "(2, 3, 3)", "(2, 3, 5)"]),
    ("grad-cn-shape", lambda hx, gcn: (hx, gcn[..., :2]), ValueError, ["grad_cn", "(2, 3, 5)", "(2, 3, 2)"]),
]


@pytest.mark.parametrize("case_id, edit, exc, words", LSTM_BAD, ids=[b[0] for b in LSTM_BAD])
def test_lstm_bad_input(case_id, edit, exc, words):
    from oracle.cases.module import ModuleCase
    i = ModuleCase("LSTM", 1, True, False, True, 4, 3, 3, 5, proj_size=3).inputs()
    hx, grad_cn = edit(i["hx"], i["grad_cn"])
    with pytest.raises(exc) as info:
        manual.module_gradients(i["config"], i["state_dict"], i["input"], hx, grad_output=i["grad_output"],
                                grad_hn=i["grad_hn"], grad_cn=grad_cn)
    msg = str(info.value)
    assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
    for w in words:
        assert w in msg, f"{case_id}: {w!r} not in: {msg}"


SLSTM_BAD = [  # (id, edit of (config, hx, upstream) of a two-head sLSTM case with H = 4, exception, words)
    ("heads-divide-H", lambda c, hx, up: ({**c, "num_heads": 3}, hx, up), ValueError,
     ["num_heads", "divide", "hidden_size = 4", "got 3", "[1, 2, 4]"]),
    ("heads-zero", lambda c, hx, up: ({**c, "num_heads": 0}, hx, up), ValueError, ["num_heads", "positive"]),
    ("forget-gate-unknown", lambda c, hx, up: ({**c, "forget_gate": "tanh"}, hx, up), ValueError,
     ["forget_gate", "'tanh'", "'sigmoid'", "'exp'"]),
    ("hx-not-four", lambda c, hx, up: (c, hx[:2], up), TypeError, ["hx", "(h0, c0, n0, m0)", "tuple of 2"]),
    ("n0-negative", lambda c, hx, up: (c, (hx[0], hx[1], -hx[2], hx[3]), up), ValueError,
     ["hx[2]", "initial n", "≥ 0", "absolute value"]),
    ("m0-shape", lambda c, hx, up: (c, (*hx[:3], hx[3][:1]), up), ValueError, ["hx[3]", "(2, 3, 4)", "(1, 3, 4)"]),
    ("grad-nn-shape", lambda c, hx, up: (c, hx, {**up, "grad_nn": up["grad_nn"][..., :2]}), ValueError,
     ["grad_nn", "(2, 3, 4)", "(2, 3, 2)", "n_n"]),
    ("grad-mn-nan", lambda c, hx, up: (c, hx, {**up, "grad_mn": up["grad_mn"] * np.nan}), ValueError,
     ["grad_mn", "finite"]),
]


@pytest.mark.parametrize("case_id, edit, exc, words", SLSTM_BAD, ids=[b[0] for b in SLSTM_BAD])
def test_slstm_bad_input(case_id, edit, exc, words):
    from oracle.cases.module import ModuleCase, state_upstreams
    i = ModuleCase("SLSTM", 1, True, False, True, 4, 3, 3, 4, num_heads=2).inputs()
    config, hx, up = edit(i["config"], i["hx"], state_upstreams(i))
    for fn in MODULE_ENTRY_POINTS[::2]:  # manual and the unrolled reference (torch has no sLSTM module)
        with pytest.raises(exc) as info:
            fn(config, i["state_dict"], i["input"], hx, grad_output=i["grad_output"], grad_hn=i["grad_hn"], **up)
        msg = str(info.value)
        assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
        for w in words:
            assert w in msg, f"{case_id}: {w!r} not in: {msg}"


ZONEOUT_BAD = [  # (id, edit of (config, masks) of a two-layer bidirectional LSTM case with zoneout, exception, words)
    ("zoneout-not-offered", lambda c, zm: ({**c, "mode": "SLSTM"}, zm), ValueError,
     ["zoneout", "'SLSTM'", "'LSTM'", "drop it"]),
    ("zoneout-with-projection", lambda c, zm: ({**c, "proj_size": 2}, zm), ValueError,
     ["zoneout", "proj_size = 0", "proj_size = 2"]),
    ("zoneout-not-bool", lambda c, zm: ({**c, "zoneout": 1}, zm), TypeError, ["zoneout", "True or False"]),
    ("masks-missing", lambda c, zm: (c, None), ValueError, ["zoneout_masks is None", "(4, 5, 3, 4)", "zoneout=False"]),
    ("masks-without-zoneout", lambda c, zm: ({**c, "zoneout": False}, zm), ValueError,
     ["zoneout_masks", "zoneout", "False", "zoneout=True"]),
    ("masks-shape", lambda c, zm: (c, zm[:2]), ValueError, ["zoneout_masks", "(4, 5, 3, 4)", "(2, 5, 3, 4)"]),
    ("masks-batch-first", lambda c, zm: (c, zm.transpose(0, 2, 1, 3)), ValueError,
     ["zoneout_masks", "(4, 5, 3, 4)", "(4, 3, 5, 4)", "time first"]),
    ("masks-not-binary", lambda c, zm: (c, 0.25 + 0 * zm), ValueError, ["zoneout_masks", "0 and 1", "240 other"]),
    ("masks-dtype", lambda c, zm: (c, zm.astype(np.float32)), TypeError, ["zoneout_masks", "float32", "float64"]),
    ("masks-nan", lambda c, zm: (c, zm * np.nan), ValueError, ["zoneout_masks", "finite"]),
]


@pytest.mark.parametrize("case_id, edit, exc, words", ZONEOUT_BAD, ids=[b[0] for b in ZONEOUT_BAD])
def test_zoneout_bad_input(case_id, edit, exc, words):
    from oracle.cases.module import ModuleCase
    i = ModuleCase("LSTM", 2, True, False, True, 5, 3, 3, 4, zoneout=True).inputs()
    config, masks = edit(i["config"], i["zoneout_masks"])
    for fn in MODULE_ENTRY_POINTS[::2]:  # manual and the unrolled reference (torch's module has no zoneout)
        with pytest.raises(exc) as info:
            fn(config, i["state_dict"], i["input"], i["hx"], grad_output=i["grad_output"], grad_hn=i["grad_hn"],
               zoneout_masks=masks)
        msg = str(info.value)
        assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
        for w in words:
            assert w in msg, f"{case_id}: {w!r} not in: {msg}"


def test_grad_nn_and_grad_mn_are_the_slstms():
    a = module_args()
    for name in ("grad_nn", "grad_mn"):
        with pytest.raises(ValueError, match=f"{name} is dL/d{name[5]}_n, and mode 'RNN_TANH' has no state"):
            manual.module_gradients(a["config"], a["state_dict"], a["input"], a["hx"], grad_hn=a["grad_hn"],
                                    **{name: a["grad_hn"]})


MODULE_ENTRY_POINTS = [manual.module_gradients, reference.module.nn_module_gradients,
                       reference.module.unrolled_module_gradients]


@pytest.mark.parametrize("fn", MODULE_ENTRY_POINTS, ids=lambda f: f"{f.__module__}.{f.__name__}")
@pytest.mark.parametrize("case_id, changes, exc, words", MODULE_BAD, ids=[b[0] for b in MODULE_BAD])
def test_module_bad_input(fn, case_id, changes, exc, words):
    a = module_args(**changes)
    with pytest.raises(exc) as info:
        fn(a["config"], a["state_dict"], a["input"], a["hx"], grad_output=a["grad_output"], grad_hn=a["grad_hn"],
           lengths=a["lengths"], grad_cn=a["grad_cn"])
    msg = str(info.value)
    assert "Remedy" in msg and isinstance(info.value, Refusal) and info.value.remedy, msg
    for w in words:
        assert w in msg, f"{case_id}: {w!r} not in: {msg}"


def test_module_overflow_names_layer_and_step():
    a = module_args(state_dict={k: v * 1e200 if "weight_hh" in k else v for k, v in SD.items()},
                    config={**MI["config"], "mode": "RNN_RELU"})
    with pytest.raises(NonFiniteGradientError) as info:
        manual.module_gradients(a["config"], a["state_dict"], a["input"], a["hx"], grad_output=a["grad_output"],
                                grad_hn=a["grad_hn"])
    assert info.value.tensor.startswith("h_l0") and info.value.t is not None, str(info.value)


def test_indrnn_recurrent_weight_is_a_vector_and_the_remedy_says_so():
    from oracle.cases.module import ModuleCase
    i = ModuleCase.parse("module/INDRNN/L1/T4-B2-I3-H5/lengths-full/up-both/float64").inputs()
    sd = {**i["state_dict"], "weight_hh_l0": np.diag(i["state_dict"]["weight_hh_l0"])}
    with pytest.raises(ValueError) as info:
        manual.module_gradients(i["config"], sd, i["input"], i["hx"], grad_output=i["grad_output"])
    assert isinstance(info.value, Refusal) and "recurrent vector u" in str(info.value)
    assert "numpy.diag(W)" in info.value.remedy
