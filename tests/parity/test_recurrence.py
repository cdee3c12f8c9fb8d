"""manual.recurrence (the hand-derived BPTT of the matrix-state recurrences) against unrolled autograd, float64."""

import numpy as np
import pytest
import torch

from manual.recurrence import VARIANTS, recurrence_gradients
from oracle.judge import compare
from reference.recurrence import unrolled_recurrence_gradients

B, T, H, K, V = 2, 6, 2, 3, 4


def draw(variant: str, per_channel: bool, init: bool, up: str, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    decay, delta = VARIANTS[variant]
    args = {"q": rng.normal(size=(B, T, H, K)), "k": rng.normal(size=(B, T, H, K)) / np.sqrt(K),
            "v": rng.normal(size=(B, T, H, V))}
    if decay is not None:
        args["g"] = -rng.uniform(0, 1, (B, T, H) if decay == "head" else (B, T, H, K))  # log-space decay
    if delta:
        args["beta"] = rng.uniform(0, 2, (B, T, H, V) if per_channel else (B, T, H))
    more = {"initial_state": rng.normal(size=(B, H, K, V)) if init else None,
            "grad_o": rng.normal(size=(B, T, H, V)) if up in ("o", "both") else None,
            "grad_final_state": rng.normal(size=(B, H, K, V)) if up in ("final", "both") else None}
    return args, more


FORMS = [(v, per_channel) for v, (_, delta) in VARIANTS.items() for per_channel in ((False, True) if delta else
                                                                                        (False,))]


@pytest.mark.parametrize("up", ["o", "final", "both"])
@pytest.mark.parametrize("init", [False, True])
@pytest.mark.parametrize("variant, per_channel", FORMS)  # β per value channel: the delta rules only
def test_manual_equals_unrolled_autograd(variant, per_channel, init, up):
    args, more = draw(variant, per_channel, init, up)
    got = recurrence_gradients(variant, **args, **more)
    want = unrolled_recurrence_gradients(variant, **{n: torch.from_numpy(a) for n, a in args.items()},
                                         **{n: None if a is None else torch.from_numpy(a) for n, a in more.items()})
    want = {n: w.numpy() for n, w in want.items()}
    assert set(got) == set(want), (sorted(got), sorted(want))
    report = compare(got, want, title=f"{variant} per_channel={per_channel} init={init} up={up}")
    assert report.ok, str(report)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_manual_runs_on_torch_tensors(variant):
    args, more = draw(variant, False, True, "both", seed=1)
    np_got = recurrence_gradients(variant, **args, **more)
    t_got = recurrence_gradients(variant, **{n: torch.from_numpy(a) for n, a in args.items()},
                                 **{n: torch.from_numpy(a) for n, a in more.items()})
    for n, a in np_got.items():
        assert isinstance(t_got[n], torch.Tensor) and np.allclose(t_got[n].numpy(), a, rtol=1e-12, atol=1e-12), n


def test_a_mistake_in_the_carry_is_caught_and_named():
    """The initial state's gradient without its gate factor (a reported kernel bug's shape): dinitial_state fails,
    dq does not."""
    args, more = draw("gated_delta_rule", False, True, "both", seed=2)
    got = recurrence_gradients("gated_delta_rule", **args, **more)
    want = {n: w.numpy() for n, w in unrolled_recurrence_gradients(
        "gated_delta_rule", **{n: torch.from_numpy(a) for n, a in args.items()},
        **{n: torch.from_numpy(a) for n, a in more.items()}).items()}
    got["initial_state"] = got["initial_state"] / np.exp(args["g"][:, 0])[..., None, None]
    report = compare(got, want)
    assert not report["initial_state"].ok and report["q"].ok and report["S"].ok
