"""Bad input to the matrix-state recurrences: every refusal of ``contract.recurrence.check_recurrence_inputs``, reached
through ``manual.recurrence_gradients`` and ``manual.recurrence_forward``, is a BadValue (ValueError) or BadType
(TypeError) whose message names the argument (before its remedy), the expected and the actual value, and a remedy;
some remedies, followed, make the call succeed; legal edge inputs (a growing decay g > 0, a forward pass with no
upstream gradient) are not refused.
"""

import contextlib
import re

import numpy as np
import pytest
import torch

import manual
from contract.errors import BadType, BadValue

B, T, H, HV, K, V = 2, 3, 1, 2, 4, 5  # two value heads per key head: the grouped layout
RNG = np.random.default_rng(0)
Q, KEYS, VALS, DO = (RNG.standard_normal(s) for s in ((B, T, H, K), (B, T, H, K), (B, T, HV, V), (B, T, HV, V)))
G_HEAD, G_KEY = -RNG.random((B, T, HV)), -RNG.random((B, T, HV, K))  # log-space decays, ≤ 0
BETA = RNG.random((B, T, HV))
GATE = {"gla_head": G_HEAD, "gla": G_KEY, "gated_delta_rule": G_HEAD, "kda": G_KEY}
DELTA = ("delta_rule", "gated_delta_rule", "kda")
VARIANTS = ("linear_attention", "gla_head", "gla", "delta_rule", "gated_delta_rule", "kda")
UPSTREAM = ("grad_o", "grad_final_state", "wrt", "per_step")  # arguments recurrence_forward does not take


def args(base="gated_delta_rule", **changes) -> dict:
    """A valid call of variant ``base`` (grad_o included), then ``changes`` (which may change the variant)."""
    a = {"variant": base, "q": Q, "k": KEYS, "v": VALS, "g": GATE.get(base),
         "beta": BETA if base in DELTA else None, "grad_o": DO}
    return {**a, **changes}


def one_row(**changes) -> dict:
    """args() with B = 1, as packed sequences (cu_seqlens) need."""
    return args(**{n: a[:1] if isinstance(a, np.ndarray) else a for n, a in args().items()}, **changes)


def torched(a: dict, dtype=torch.float32) -> dict:
    return {n: torch.from_numpy(x).to(dtype) if isinstance(x, np.ndarray) else x for n, x in a.items()}


def call(fn, a: dict):
    return fn(**{n: x for n, x in a.items() if fn is manual.recurrence_gradients or n not in UPSTREAM})


def with_at(a: np.ndarray, index: tuple, value: float) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


@contextlib.contextmanager
def refused(exc, arg: str, *words: str):
    """The one comparison: ``exc`` is raised, its message names ``arg`` (as a word, not inside code such as
    ``q.reshape``) before a non-empty ``Remedy: …``, and holds every one of ``words``."""
    with pytest.raises(exc, match=rf"(?s)(?<![\w.]){re.escape(arg)}(?![\w.]).*Remedy: \S") as info:
        yield info
    assert issubclass(exc, (BadValue, BadType)) and info.value.remedy, str(info.value)
    for w in words:
        assert w in str(info.value), f"{w!r} not in: {info.value}"


BAD = [  # (id, arguments, exception, the argument named, words: expected and actual); both entry points
    ("variant-near-miss", args(variant="gated_delta"), BadValue, "variant",
     ["'gated_delta'", "did you mean 'gated_delta_rule'?"]),
    ("variant-wrong-case", args("kda", variant="KDA"), BadValue, "variant", ["'KDA'", "did you mean 'kda'?"]),
    ("variant-unknown", args(variant="mamba"), BadValue, "variant", ["'mamba'", "'linear_attention'"]),
    ("variant-not-str", args(variant=3), BadType, "variant", ["must be a str", "int 3"]),
    ("q-list", args(q=Q.tolist()), BadType, "q", ["must be an array", "list"]),
    ("q-masked-array", args(q=np.ma.masked_invalid(Q)), BadType, "q", ["masked array", "q.filled(value)"]),
    ("q-integer", args(q=Q.astype(np.int64)), BadType, "q", ["real floating", "int64", "astype"]),
    ("q-3d", args(q=Q.reshape(B, T, H * K)), BadValue, "q", ["4-D [B, T, H, K]", "(2, 3, 4)", "q.reshape"]),
    ("q-empty-B", args(q=Q[:0]), BadValue, "q", ["B (batch rows) = 0", "non-empty"]),
    ("q-empty-T", args(q=Q[:, :0]), BadValue, "q", ["T (time steps) = 0"]),
    ("q-empty-H", args(q=Q[:, :, :0]), BadValue, "q", ["H (heads) = 0"]),
    ("q-empty-K", args(q=Q[..., :0]), BadValue, "q", ["K (key channels) = 0"]),
    ("k-shape", args(k=KEYS[..., :3]), BadValue, "k", ["(2, 3, 1, 4)", "got (2, 3, 1, 3)"]),
    ("k-torch-q-numpy", args(k=torch.from_numpy(KEYS)), BadType, "k",
     ["torch.Tensor", "numpy.ndarray", "one library", "torch.from_numpy"]),
    ("k-float32-q-float64", args(k=KEYS.astype(np.float32)), BadType, "k",
     ["float32", "float64", "a.astype(numpy.float64)"]),
    ("k-torch-float64-q-float32", {**torched(args()), "k": torch.from_numpy(KEYS)}, BadType, "k",
     ["torch.float64", "torch.float32", "a.to(torch.float32)"]),
    ("v-list", args(v=VALS.tolist()), BadType, "v", ["must be an array", "list"]),
    ("v-wrong-B", args(v=VALS[:1]), BadValue, "v", ["B, T = 2, 3", "got shape (1, 3, 2, 5)"]),
    ("v-wrong-T", args(v=VALS[:, :2]), BadValue, "v", ["B, T = 2, 3", "got shape (2, 2, 2, 5)"]),
    ("v-HV-not-multiple-of-H", args("delta_rule", q=np.concatenate([Q, Q], 2), k=np.concatenate([KEYS, KEYS], 2),
                                    v=VALS[:, :, :1].repeat(3, 2), beta=BETA[:, :, :1].repeat(3, 2)),
     BadValue, "v", ["multiple of q's H = 2", "got shape (2, 3, 3, 5)"]),
    ("v-3d", args(v=VALS[..., 0]), BadValue, "v", ["[B, T, HV, V]", "(2, 3, 2)"]),
    ("v-integer", args(v=VALS.astype(np.int64)), BadType, "v", ["int64", "float64"]),
    ("v-nan", args(v=with_at(VALS, (1, 2, 1, 3), np.nan)), BadValue, "v", ["finite", "NaN", "(1, 2, 1, 3)"]),
    ("q-inf", args(q=with_at(Q, (0, 1, 0, 2), -np.inf)), BadValue, "q", ["finite", "(0, 1, 0, 2)"]),
    ("g-missing-gla", args("gla", g=None), BadValue, "g", ["variant 'gla' needs g", "(2, 3, 2, 4)", "got None"]),
    ("g-missing-gated_delta_rule", args(g=None), BadValue, "g", ["needs g", "(2, 3, 2)", "got None"]),
    ("g-given-linear_attention", args("linear_attention", g=G_HEAD), BadValue, "g",
     ["must be None", "'linear_attention'", "gla_head, gla, gated_delta_rule, kda"]),
    ("g-given-delta_rule", args("delta_rule", g=G_HEAD), BadValue, "g", ["must be None", "'delta_rule'"]),
    ("g-per-key-for-gla_head", args("gla_head", g=G_KEY), BadValue, "g", ["(2, 3, 2)", "got (2, 3, 2, 4)"]),
    ("g-per-head-for-kda", args("kda", g=G_HEAD), BadValue, "g", ["(2, 3, 2, 4)", "got (2, 3, 2)"]),
    ("g-key-heads-not-value-heads", args(g=G_HEAD[:, :, :1]), BadValue, "g", ["(2, 3, 2)", "got (2, 3, 1)"]),
    ("g-list", args(g=G_HEAD.tolist()), BadType, "g", ["must be an array", "list"]),
    ("g-float32", args(g=G_HEAD.astype(np.float32)), BadType, "g", ["float32", "float64"]),
    ("g-inf", args(g=with_at(G_HEAD, (1, 2, 0), np.inf)), BadValue, "g", ["finite", "(1, 2, 0)"]),
    ("beta-missing-delta_rule", args("delta_rule", beta=None), BadValue, "beta",
     ["needs beta", "(2, 3, 2) or (2, 3, 2, 5)", "got None"]),
    ("beta-given-gla", args("gla", beta=BETA), BadValue, "beta",
     ["must be None", "'gla'", "delta_rule, gated_delta_rule, kda"]),
    ("beta-per-key", args(beta=RNG.random((B, T, HV, K))), BadValue, "beta",
     ["(2, 3, 2)", "(2, 3, 2, 5)", "got (2, 3, 2, 4)"]),
    ("beta-key-heads", args(beta=BETA[:, :, :1]), BadValue, "beta", ["(2, 3, 2)", "got (2, 3, 1)"]),
    ("beta-nan", args(beta=with_at(BETA, (0, 0, 1), np.nan)), BadValue, "beta", ["finite", "(0, 0, 1)"]),
    ("initial_state-N-not-B", args(initial_state=np.zeros((3, HV, K, V))), BadValue, "initial_state",
     ["(2, 2, 4, 5)", "got (3, 2, 4, 5)", "N = B"]),
    ("initial_state-N-not-packed-count", one_row(cu_seqlens=[0, 1, 3], initial_state=np.zeros((1, HV, K, V))),
     BadValue, "initial_state", ["(2, 2, 4, 5)", "got (1, 2, 4, 5)", "len(cu_seqlens) − 1"]),
    ("initial_state-float32", args(initial_state=np.zeros((B, HV, K, V), np.float32)), BadType, "initial_state",
     ["float32", "float64"]),
    ("initial_state-inf", args(initial_state=with_at(np.zeros((B, HV, K, V)), (1, 0, 3, 4), np.inf)), BadValue,
     "initial_state", ["finite", "(1, 0, 3, 4)"]),
    ("cu_seqlens-B-2", args(cu_seqlens=[0, 1, 3]), BadValue, "cu_seqlens",
     ["B must be 1", "B = 2", "q.reshape(1, B * T, H, K)"]),
    ("cu_seqlens-not-at-0", one_row(cu_seqlens=[1, 3]), BadValue, "cu_seqlens", ["start at 0", "[1, 3]"]),
    ("cu_seqlens-one-entry", one_row(cu_seqlens=[0]), BadValue, "cu_seqlens", ["at least two entries", "[0]"]),
    ("cu_seqlens-equal-entries", one_row(cu_seqlens=[0, 1, 1, 3]), BadValue, "cu_seqlens",
     ["strictly increasing", "1 then 1", "entries 1, 2"]),
    ("cu_seqlens-decreasing", one_row(cu_seqlens=[0, 2, 1]), BadValue, "cu_seqlens", ["2 then 1"]),
    ("cu_seqlens-beyond-T", one_row(cu_seqlens=[0, 1, 4]), BadValue, "cu_seqlens", ["T = 3", "got 4"]),
    ("cu_seqlens-float-array", one_row(cu_seqlens=np.array([0.0, 1.0, 3.0])), BadType, "cu_seqlens",
     ["integers", "float64"]),
    ("cu_seqlens-float-tensor", one_row(cu_seqlens=torch.tensor([0.0, 3.0])), BadType, "cu_seqlens",
     ["integers", "torch.float32", "t.long()"]),
    ("cu_seqlens-2d", one_row(cu_seqlens=np.array([[0, 1, 3]])), BadValue, "cu_seqlens", ["1-D", "(1, 3)"]),
    ("cu_seqlens-str", one_row(cu_seqlens="0,1,3"), BadType, "cu_seqlens", ["list of ints", "str '0,1,3'"]),
    ("cu_seqlens-float-list", one_row(cu_seqlens=[0.0, 3.0]), BadType, "cu_seqlens", ["integers", "[0.0, 3.0]"]),
    ("cu_seqlens-bool-list", one_row(cu_seqlens=[0, True]), BadType, "cu_seqlens", ["integers", "[0, True]"]),
    ("scale-str", args(scale="0.5"), BadType, "scale", ["real number", "str '0.5'", "scale=0.125"]),
    ("scale-bool", args(scale=True), BadType, "scale", ["real number", "bool True"]),
    ("scale-inf", args(scale=float("inf")), BadValue, "scale", ["finite", "got inf", "scale=None"]),
    ("scale-nan", args(scale=float("nan")), BadValue, "scale", ["finite", "got nan"]),
    ("use_qk_l2norm-int", args(use_qk_l2norm=1), BadType, "use_qk_l2norm", ["True or False", "got 1"]),
    ("use_qk_l2norm-str", args(use_qk_l2norm="yes"), BadType, "use_qk_l2norm", ["got 'yes'"]),
]

BAD_UPSTREAM = [  # recurrence_gradients alone: the upstream gradients and wrt
    ("no-loss", args(grad_o=None), BadValue, "grad_o", ["grad_final_state", "both None", "[B, T, HV, V]"]),
    ("grad_o-shape", args(grad_o=DO[:, :, :1]), BadValue, "grad_o", ["(2, 3, 2, 5)", "got (2, 3, 1, 5)"]),
    ("grad_o-torch", args(grad_o=torch.from_numpy(DO)), BadType, "grad_o", ["torch.Tensor", "one library"]),
    ("grad_o-nan", args(grad_o=with_at(DO, (0, 2, 1, 0), np.nan)), BadValue, "grad_o", ["finite", "(0, 2, 1, 0)"]),
    ("grad_final_state-transposed", args(grad_final_state=np.zeros((B, HV, V, K))), BadValue, "grad_final_state",
     ["(2, 2, 4, 5)", "got (2, 2, 5, 4)"]),
    ("grad_final_state-packed-N", one_row(cu_seqlens=[0, 1, 3], grad_final_state=np.zeros((1, HV, K, V))),
     BadValue, "grad_final_state", ["(2, 2, 4, 5)", "got (1, 2, 4, 5)"]),
    ("wrt-initial_state-not-given", args(wrt="initial_state"), BadValue, "wrt",
     ["'initial_state'", "not an input given", "q, k, v, g, beta"]),
    ("wrt-g-linear_attention", args("linear_attention", wrt=["q", "g"]), BadValue, "wrt", ["'g'", "are q, k, v."]),
    ("wrt-empty", args(wrt=[]), BadValue, "wrt", ["empty", "q, k, v, g, beta"]),
    ("wrt-unknown", args(wrt="dq"), BadValue, "wrt", ["'dq'", "not an input given"]),
    ("wrt-S", args(wrt=("q", "S")), BadValue, "wrt", ["'S'"]),
]

GAPS = [  # refusals found missing by a review, each with what it was
    ("wrt-not-a-name-or-list", args(wrt=123), BadType, "wrt", ["int"],
     "_wrt calls tuple(123): a bare TypeError without the argument's name or a remedy"),
    ("per_step-not-bool", args(per_step="no"), BadType, "per_step", ["'no'"],
     "per_step is never checked: 'no' is taken as True and S is returned"),
    ("cu_seqlens-masked-array", one_row(cu_seqlens=np.ma.array([0, 1, 3], mask=[0, 1, 0])), BadType, "cu_seqlens",
     ["masked array"], "_cu_seqlens skips plain_array: int(None) raises a bare TypeError"),
]

FNS = (manual.recurrence_gradients, manual.recurrence_forward)
CASES = [pytest.param(fn, *row[1:], id=f"{row[0]}-{fn.__name__}") for row in BAD for fn in FNS] + [
    pytest.param(manual.recurrence_gradients, *row[1:], id=row[0]) for row in BAD_UPSTREAM] + [
    pytest.param(manual.recurrence_gradients, *row[1:5], id=row[0]) for row in GAPS]


@pytest.mark.parametrize("fn, a, exc, arg, words", CASES)
def test_bad_input_is_refused_by_name_with_a_remedy(fn, a, exc, arg, words):
    with refused(exc, arg, *words):
        call(fn, a)


def test_forward_needs_no_upstream_gradient():
    for variant in VARIANTS:
        o, final = manual.recurrence_forward(**{n: x for n, x in args(variant).items() if n != "grad_o"})
        assert o.shape == (B, T, HV, V) and final.shape == (B, HV, K, V), variant
    with refused(BadValue, "grad_o", "both None"):
        manual.recurrence_gradients(**args(grad_o=None))


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v in GATE])
def test_a_growing_decay_is_allowed(variant):
    """g > 0 (e^g > 1: the state grows) is legal input: no refusal, finite results at this size."""
    a = args(variant, g=np.abs(GATE[variant]) + 0.1, grad_final_state=np.ones((B, HV, K, V)))
    grads = manual.recurrence_gradients(**a)
    assert all(np.isfinite(x).all() for x in grads.values()) and set(grads) >= {"q", "k", "v", "g", "S"}


def suggested(msg: str) -> str:
    return re.search(r"did you mean '(\w+)'", msg).group(1)


REMEDIES = [  # (id, the refused arguments, the same arguments after following the message's remedy)
    ("variant-suggestion", args(variant="gated_delta"), lambda a, msg: {**a, "variant": suggested(msg)}),
    ("variant-case", args("kda", variant="KDA"), lambda a, msg: {**a, "variant": suggested(msg)}),
    ("q-cast", args(q=Q.astype(np.int64)), lambda a, msg: {**a, "q": a["q"].astype(np.float64)}),
    ("q-reshape", args(q=Q.reshape(B, T, H * K)), lambda a, msg: {**a, "q": a["q"].reshape(B, T, H, K)}),
    ("q-filled", args(q=np.ma.masked_invalid(Q)), lambda a, msg: {**a, "q": a["q"].filled(0.0)}),
    ("k-from-torch", args(k=torch.from_numpy(KEYS)), lambda a, msg: {**a, "k": a["k"].cpu().numpy()}),
    ("k-cast", args(k=KEYS.astype(np.float32)), lambda a, msg: {**a, "k": a["k"].astype(np.float64)}),
    ("v-nan-cleaned", args(v=with_at(VALS, (1, 2, 1, 3), np.nan)), lambda a, msg: {**a, "v": np.nan_to_num(a["v"])}),
    ("scale-real", args(scale="0.5"), lambda a, msg: {**a, "scale": 0.125}),
    ("scale-None", args(scale=float("inf")), lambda a, msg: {**a, "scale": None}),
    ("use_qk_l2norm-bool", args(use_qk_l2norm=1), lambda a, msg: {**a, "use_qk_l2norm": True}),
    ("wrt-None", args(wrt="initial_state"), lambda a, msg: {**a, "wrt": None}),
    ("beta-dropped", args("gla", beta=BETA), lambda a, msg: {**a, "beta": None}),
    ("loss-given", args(grad_o=None), lambda a, msg: {**a, "grad_final_state": np.ones((B, HV, K, V))}),
    ("cu_seqlens-cut", one_row(cu_seqlens=[0, 1, 4]), lambda a, msg: {**a, "cu_seqlens": [0, 1, 3]}),
    ("cu_seqlens-long", one_row(cu_seqlens=torch.tensor([0.0, 3.0])),
     lambda a, msg: {**a, "cu_seqlens": torch.tensor([0, 3], dtype=torch.long)}),
]


@pytest.mark.parametrize("a, follow", [r[1:] for r in REMEDIES], ids=[r[0] for r in REMEDIES])
def test_following_the_remedy_works(a, follow):
    with pytest.raises((BadValue, BadType), match="Remedy: ") as info:
        manual.recurrence_gradients(**a)
    grads = manual.recurrence_gradients(**follow(a, str(info.value)))
    assert grads and all(np.isfinite(np.asarray(x)).all() for x in grads.values())


def test_packing_the_batch_as_the_remedy_says_gives_the_unpacked_result():
    """cu_seqlens with B = 2 is refused; q.reshape(1, B * T, H, K) (v, g, beta, grad_o alike) with
    cu_seqlens [0, T, 2T] computes the same as the unpacked call."""
    with refused(BadValue, "cu_seqlens", "cu_seqlens [0, T, 2T"):
        manual.recurrence_gradients(**args(cu_seqlens=[0, T, 2 * T]))
    packed = {n: x.reshape(1, B * T, *x.shape[2:]) if isinstance(x, np.ndarray) else x for n, x in args().items()}
    got = manual.recurrence_gradients(**packed, cu_seqlens=[0, T, 2 * T], per_step=False)
    want = manual.recurrence_gradients(**args(), per_step=False)
    assert set(got) == set(want)
    for n in want:
        np.testing.assert_allclose(got[n], want[n].reshape(got[n].shape), rtol=1e-12, atol=1e-12, err_msg=n)
    o, final = manual.recurrence_forward(**{n: x for n, x in packed.items() if n != "grad_o"}, cu_seqlens=[0, T, 2 * T])
    o_want, final_want = manual.recurrence_forward(**{n: x for n, x in args().items() if n != "grad_o"})
    np.testing.assert_allclose(o, o_want.reshape(o.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final, final_want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ found by the review of the finished change

@pytest.mark.parametrize("a, arg, words", [
    (args(g=G_HEAD[:, :, :H]), "g", ["repeat_interleave(2, dim=2)"]),  # one decay per key head, not per value head
    (args("kda", g=G_KEY, beta=RNG.random((B, T, HV, K))), "beta", ["per value channel", "V = 5"]),
    (args(g=G_KEY), "g", ["'gla' or 'kda'"]),  # a per-key decay for a per-head variant
    (args(v=VALS[..., None]), "v", ["4-D", "v.reshape(B, T, HV, V)"]),
], ids=["g-per-key-head", "beta-per-key-channel", "g-of-another-variant", "v-5-d"])
def test_a_gate_or_value_of_the_wrong_layout_gets_the_remedy_for_it(a, arg, words):
    with refused(BadValue, arg, *words):
        manual.recurrence_gradients(**a)


def test_numpy_flags_and_a_0_d_scale_are_taken_as_python_ones():
    plain = manual.recurrence_gradients(**args(scale=0.5, use_qk_l2norm=True))
    numpyish = manual.recurrence_gradients(**args(scale=np.array(0.5), use_qk_l2norm=np.bool_(True),
                                                  per_step=np.bool_(True)))
    assert all(np.array_equal(plain[n], numpyish[n]) for n in plain)


def test_inputs_that_require_grad_build_no_graph():
    a = {n: x.requires_grad_(True) if isinstance(x, torch.Tensor) else x
         for n, x in torched(args(), torch.float64).items()}
    for got in (manual.recurrence_gradients(**a).values(), manual.recurrence_forward(**{
            n: x for n, x in a.items() if n not in UPSTREAM})):
        assert not any(t.requires_grad for t in got)


@pytest.mark.parametrize("fn", [manual.recurrence_forward, manual.recurrence_gradients])
def test_an_overflowing_state_is_named_by_its_step(fn):
    """A g > 0 grows the state (allowed): e^{1·t} passes float64's range near t = 710, and the error says where,
    as the cells' NonFiniteGradientError does; nothing comes back as NaN."""
    from contract import NonFiniteGradientError
    T_long = 800
    a = {"variant": "gla_head", "q": np.ones((1, T_long, 1, 2)), "k": np.ones((1, T_long, 1, 2)),
         "v": np.ones((1, T_long, 1, 2)), "g": np.ones((1, T_long, 1)), "grad_o": np.ones((1, T_long, 1, 2))}
    with pytest.raises(NonFiniteGradientError, match=r"S \(forward pass\) stops being finite at time step t=7\d\d"):
        call(fn, a)


def test_a_backward_overflow_is_named_by_its_tensor_and_step():
    """The forward pass finite, its gradient not: dL/dS_t grows backward through e^{g} > 1 from a huge dL/do."""
    from contract import NonFiniteGradientError
    a = {"variant": "gla_head", "q": np.ones((1, 4, 1, 1)), "k": np.ones((1, 4, 1, 1)), "v": np.ones((1, 4, 1, 1)),
         "g": np.full((1, 4, 1), 300.0), "grad_o": np.full((1, 4, 1, 1), 1e300)}
    with pytest.raises(NonFiniteGradientError, match=r"stops being finite at time step t=\d"):
        manual.recurrence_gradients(**a)
