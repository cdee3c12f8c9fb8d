"""manual.recurrence (the hand-derived BPTT of the matrix-state recurrences) against unrolled autograd, float64,
and against central differences: every variant, β per head and per value channel, an initial state given,
absent or given but not differentiated, driven through o, the final state or both, packed sequences with a
padding tail, grouped value heads and the L2 norm inside."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.recurrence import VARIANTS
from manual.recurrence import recurrence_forward, recurrence_gradients
from oracle.cases.recurrence import FORMS, recurrence_truth, time_major
from oracle.fd import recurrence_fd_errors
from oracle.judge import compare
from oracle.policy import FD_TOL
from reference.recurrence import recurrence_forward as reference_forward
from reference.recurrence import unrolled_recurrence_gradients


def draw(variant, *, B=2, T=6, H=2, groups=1, K=3, V=4, per_channel=False, init="yes", up="both", packed=None,
         l2norm=False, g_range=(0.0, 1.0), beta_range=(0.0, 2.0), seed=0) -> tuple[dict, dict]:
    """(args, kwargs) of one call; ``packed``: the sequences' lengths (B = 1), their sum at most T."""
    rng = np.random.default_rng(seed)
    decay, delta = VARIANTS[variant]
    B = 1 if packed else B
    N, HV = (len(packed) if packed else B), H * groups
    args = {"variant": variant, "q": rng.normal(size=(B, T, H, K)),
            "k": rng.normal(size=(B, T, H, K)) / (1 if l2norm else np.sqrt(K)), "v": rng.normal(size=(B, T, HV, V))}
    if decay is not None:
        args["g"] = -rng.uniform(*g_range, (B, T, HV) if decay == "head" else (B, T, HV, K))  # log-space decay
    if delta:
        args["beta"] = rng.uniform(*beta_range, (B, T, HV, V) if per_channel else (B, T, HV))
    kwargs = {"initial_state": rng.normal(size=(N, HV, K, V)) if init != "no" else None,
              "grad_o": rng.normal(size=(B, T, HV, V)) if up in ("o", "both") else None,
              "grad_final_state": rng.normal(size=(N, HV, K, V)) if up in ("final", "both") else None,
              "cu_seqlens": list(np.cumsum([0, *packed])) if packed else None, "use_qk_l2norm": l2norm}
    if init == "nograd":
        kwargs["wrt"] = [n for n in ("q", "k", "v", "g", "beta") if n in args]
    return args, kwargs


def both(args: dict, kwargs: dict) -> tuple[dict, dict]:
    """(manual's gradients, autograd's) as NumPy, on the same inputs."""
    got = recurrence_gradients(**args, **kwargs)
    t = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # noqa: E731
    want = unrolled_recurrence_gradients(**{n: t(a) for n, a in args.items()},
                                         **{n: t(a) for n, a in kwargs.items()})
    return got, {n: w.numpy() for n, w in want.items()}


def agree(args: dict, kwargs: dict, title: str = "") -> None:
    """manual against the float64 truth (unrolled autograd, with its sensitivity and the L2 norm's cancellation:
    oracle.cases.recurrence.recurrence_truth), judged by the policy's bound."""
    got = recurrence_gradients(**args, **kwargs)
    asked = kwargs.get("wrt") or [n for n in ("q", "k", "v", "g", "beta") if n in args] + \
        (["initial_state"] if kwargs["initial_state"] is not None else [])
    assert list(got) == [*asked, "S"], list(got)
    want = recurrence_truth({"scale": None, **args, **{n: a for n, a in kwargs.items() if n != "wrt"},
                             "g": args.get("g"), "beta": args.get("beta")})
    report = want.compare(time_major(got), title=title, skip=() if "wrt" not in kwargs else ("initial_state",))
    assert report.ok, str(report)


OPTIONS = {  # one line per option, each alone beside the plain case, and all of them together
    "plain": {}, "no-initial-state": {"init": "no"}, "initial-state-not-differentiated": {"init": "nograd"},
    "up-o": {"up": "o"}, "up-final": {"up": "final"}, "packed-with-padding": {"packed": [3, 1, 4], "T": 10},
    "packed-whole": {"packed": [2, 4], "T": 6}, "grouped-heads": {"groups": 3}, "l2norm": {"l2norm": True},
    "everything": {"packed": [5, 2], "T": 9, "groups": 2, "l2norm": True, "init": "nograd", "up": "o"},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("variant, per_channel", FORMS)  # β per value channel: the delta rules only
def test_manual_equals_unrolled_autograd(variant, per_channel, option):
    args, kwargs = draw(variant, per_channel=per_channel, **OPTIONS[option])
    agree(args, kwargs, title=f"{variant} per_channel={per_channel} {option}")


@pytest.mark.parametrize("variant, per_channel", FORMS)
def test_manual_equals_central_differences(variant, per_channel):
    args, kwargs = draw(variant, per_channel=per_channel, T=4, packed=[1, 2], groups=2, l2norm=True, K=2, V=3,
                        seed=5)
    errors = recurrence_fd_errors(recurrence_gradients(**args, **kwargs, per_step=False),
                                  {n: a for n, a in args.items()}, kwargs)
    assert set(errors) == {"q", "k", "v", "initial_state"} | ({"g"} & set(args)) | ({"beta"} & set(args))
    bad = {n: e for n, e in errors.items() if e > FD_TOL}
    assert not bad, bad


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_equals_the_reference_forward(variant):
    args, kwargs = draw(variant, packed=[3, 2], T=7, groups=2, l2norm=True)
    fwd = {n: kwargs[n] for n in ("initial_state", "cu_seqlens", "use_qk_l2norm")}
    o, final = recurrence_forward(**args, **fwd)
    t_args = {n: torch.from_numpy(a) if isinstance(a, np.ndarray) else a for n, a in args.items()}
    want_o, want_final = reference_forward(**t_args, **{**fwd, "initial_state": torch.from_numpy(fwd["initial_state"])})
    assert np.allclose(o, want_o.numpy(), rtol=1e-12, atol=1e-12) and np.allclose(final, want_final.numpy(),
                                                                                   rtol=1e-12, atol=1e-12)
    assert o.shape == (1, 7, 4, 4) and final.shape == (2, 4, 3, 4) and not o[:, 5:].any()  # the padding's o = 0


def test_padding_and_boundaries_are_exact():
    """The padding's gradients are exactly zero, and nothing crosses a boundary: the second sequence's gradients
    do not move when the first one's inputs do."""
    args, kwargs = draw("gated_delta_rule", packed=[3, 2], T=8)
    got = recurrence_gradients(**args, **kwargs)
    assert all(not np.any(got[n][:, 5:]) for n in ("q", "k", "v", "g", "beta", "S"))
    moved = {**args, "v": args["v"].copy()}
    moved["v"][:, :3] += 1.0
    again = recurrence_gradients(**moved, **kwargs)
    assert np.array_equal(again["k"][:, 3:], got["k"][:, 3:]) and np.array_equal(again["initial_state"][1],
                                                                                  got["initial_state"][1])


def test_wrt_returns_only_what_is_asked():
    args, kwargs = draw("kda", up="o")
    got = recurrence_gradients(**args, **{**kwargs, "wrt": ["beta", "q"]})
    assert list(got) == ["q", "beta", "S"]
    assert list(recurrence_gradients(**args, **kwargs, per_step=False)) == ["q", "k", "v", "g", "beta",
                                                                             "initial_state"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_manual_runs_on_torch_tensors(variant):
    args, kwargs = draw(variant, packed=[2, 3], T=6, groups=2, l2norm=True, seed=1)
    np_got = recurrence_gradients(**args, **kwargs)
    t = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # noqa: E731
    t_got = recurrence_gradients(**{n: t(a) for n, a in args.items()}, **{n: t(a) for n, a in kwargs.items()})
    for n, a in np_got.items():
        assert isinstance(t_got[n], torch.Tensor) and np.allclose(t_got[n].numpy(), a, rtol=1e-12, atol=1e-12), n


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 9, 10, 17])
def test_checkpointing_holds_at_every_length(T):
    """Blocks of ⌈√T⌉ steps: lengths one short of, at and one past a square."""
    agree(*draw("gated_delta_rule", T=T, B=1, H=1), title=f"T={T}")


def test_a_mistake_in_the_carry_is_caught_and_named():
    """The initial state's gradient without its gate factor (a reported kernel bug's shape): dinitial_state fails,
    dq does not."""
    args, kwargs = draw("gated_delta_rule", seed=2)
    got, want = both(args, kwargs)
    got["initial_state"] = got["initial_state"] / np.exp(args["g"][:, 0])[..., None, None]
    report = compare(got, want)
    assert not report["initial_state"].ok and report["q"].ok and report["S"].ok


@settings(max_examples=40, deadline=None)
@given(form=st.sampled_from(FORMS), T=st.integers(1, 7), H=st.integers(1, 2), groups=st.integers(1, 2),
       K=st.integers(1, 4), V=st.integers(1, 4), init=st.sampled_from(["yes", "no", "nograd"]),
       up=st.sampled_from(["o", "final", "both"]), l2norm=st.booleans(),
       g_range=st.sampled_from([(0.0, 0.0), (0.0, 1.0), (30.0, 40.0)]),  # no decay, some, e^g ≈ 0
       beta_range=st.sampled_from([(0.0, 0.0), (0.0, 2.0), (2.0, 2.0)]), seed=st.integers(0, 2**16))
def test_property_random_shapes_and_decays(form, T, H, groups, K, V, init, up, l2norm, g_range, beta_range, seed):
    variant, per_channel = form
    agree(*draw(variant, T=T, H=H, groups=groups, K=K, V=V, per_channel=per_channel, init=init, up=up, l2norm=l2norm,
                g_range=g_range, beta_range=beta_range, seed=seed))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_manual_and_the_reference_run_on_cuda(variant):
    """CUDA in, CUDA out: manual's gradients on the device equal NumPy's, and the reference runs there too (its
    zero states and the padding's zero dL/dS_t made on the inputs' device)."""
    args, kwargs = draw(variant, packed=[2, 3], T=7, groups=2, l2norm=True, init="no", seed=3)
    cuda = lambda a: torch.from_numpy(a).cuda() if isinstance(a, np.ndarray) else a  # noqa: E731
    here = recurrence_gradients(**args, **kwargs)
    there = recurrence_gradients(**{n: cuda(a) for n, a in args.items()}, **{n: cuda(a) for n, a in kwargs.items()})
    auto = unrolled_recurrence_gradients(**{n: cuda(a) for n, a in args.items()},
                                         **{n: cuda(a) for n, a in kwargs.items()})
    for n, a in here.items():
        assert there[n].is_cuda and auto[n].is_cuda, n
        assert np.allclose(there[n].cpu().numpy(), a, rtol=1e-10, atol=1e-12), n
        assert np.allclose(auto[n].cpu().numpy(), a, rtol=1e-10, atol=1e-12), n
