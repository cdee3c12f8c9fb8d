"""The seed notes' equations, one test each, on the notes' own two- and four-step models.

Every right-hand side computed by ``manual.seed`` (written equation by
equation) is checked against what torch.autograd computes on the same model;
per-step contributions come from autograd with untied weights
(``reference.per_step_gradients``).
"""

import numpy as np
import pytest
import torch
from helpers import assert_grads_match

import manual
import reference
from contract import ACTIVATIONS
from oracle.judge import tolerance

B, D, H, O = 1, 3, 4, 2  # the notes use single vectors: one batch row


def model(T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"Wxh": rng.normal(0, 0.8, (H, D)), "Whh": rng.normal(0, 0.6, (H, H)),
              "bh": rng.normal(0, 0.2, H), "Why": rng.normal(0, 0.8, (O, H)), "by": rng.normal(0, 0.2, O)}
    return params, rng.normal(0, 1, (T, B, D)), rng.normal(0, 0.5, (B, H)), rng.normal(0, 1, (B, O))


TOL = tolerance("float64", T=4, K=H)  # the policy's bound at the longest seed example


def close(name, got, want):
    assert_grads_match({name: got}, {name: want}, tol=TOL, where=name)


@pytest.fixture(scope="module")
def two():
    params, x, h0, y_true = model(2)
    seed = manual.seed.two_step(params, x[0], x[1], h0, y_true)
    kw = {"h0": h0, "activation": "tanh", "loss": "mse", "topology": "many-to-one"}
    return params, seed, reference.gradients(params, x, y_true, **kw), \
        reference.per_step_gradients(params, x, y_true, **kw)


def test_dL_dy_of_the_mean_squared_error(two):
    params, seed, _, _ = two
    _, x, h0, y_true = model(2)
    y = torch.tensor(seed["y"], requires_grad=True)
    torch.nn.functional.mse_loss(y, torch.tensor(y_true)).backward()
    close("dL/dy", seed["dL/dy"], y.grad.numpy())


def test_dL_dh2_is_dL_dy_times_Why(two):
    _, seed, auto, _ = two
    close("dL/dh2", seed["dL/dh2"], auto["h"][1])


def test_dL_dWhh_at_t2(two):
    _, seed, _, steps = two
    close("dL/dWhh (t=2)", seed["dL/dWhh (t=2)"], steps["Whh"][1])


def test_dL_dh1_through_the_future(two):
    _, seed, auto, _ = two
    close("dL/dh1", seed["dL/dh1"], auto["h"][0])


def test_dL_dWhh_at_t1(two):
    _, seed, _, steps = two
    close("dL/dWhh (t=1)", seed["dL/dWhh (t=1)"], steps["Whh"][0])


def test_total_is_the_sum_over_steps(two):
    _, seed, auto, steps = two
    close("dL/dWhh", seed["dL/dWhh"], auto["Whh"])
    close("sum_t dL/dWhh (t)", steps["Whh"].sum(axis=0), auto["Whh"])  # autograd agrees with itself


def test_two_step_equals_the_general_loop(two):
    params, seed, _, _ = two
    _, x, h0, y_true = model(2)
    g = manual.gradients(params, x, y_true, h0=h0)
    for name, got in (("dL/dh1", g["h"][0]), ("dL/dh2", g["h"][1]), ("dL/dWhh", g["Whh"])):
        close(name, got, seed[name])


def test_many_to_many_remark_direct_plus_future():
    """The notes' remark: dL/dh1 = ∂L1/∂h1 + dL/dh2 ⋅ dh2/dh1, all from autograd, then manual."""
    params, x, h0, _ = model(2)
    y = np.random.default_rng(1).normal(0, 1, (2, B, O))
    kw = {"h0": h0, "activation": "tanh", "loss": "mse"}
    both = reference.gradients(params, x, y, topology="many-to-many", **kw)
    # ∂L1/∂h1: the gradient of the step-1 loss alone, a one-step many-to-one problem
    direct = reference.gradients(params, x[:1], y[0], topology="many-to-one", **kw)["h"][0]
    future = both["z"][1] @ params["Whh"]  # dL/dh2 ⋅ dh2/dh1 = dL/dz2 Whh
    close("dL/dh1 = direct + future", direct + future, both["h"][0])
    close("manual dL/dh1", manual.gradients(params, x, y, topology="many-to-many", **kw)["h"][0],
          both["h"][0])


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_bptt2_general_act_prime(activation):
    """BPTT2: four steps, act'(z_t) in place of 1 − h_t², for every activation."""
    params, x, h0, y_true = model(4, seed=2)
    seed = manual.seed.four_step(params, *x, h0, y_true, activation=activation)
    kw = {"h0": h0, "activation": activation, "loss": "mse", "topology": "many-to-one"}
    auto = reference.gradients(params, x, y_true, **kw)
    steps = reference.per_step_gradients(params, x, y_true, **kw)
    loop = manual.gradients(params, x, y_true, **kw)
    for t in (1, 2, 3, 4):
        close(f"dL/dh{t}", seed[f"dL/dh{t}"], auto["h"][t - 1])
        close(f"dL/dWhh (t={t})", seed[f"dL/dWhh (t={t})"], steps["Whh"][t - 1])
        close(f"loop dL/dh{t}", loop["h"][t - 1], seed[f"dL/dh{t}"])
    close("dL/dWhh", seed["dL/dWhh"], auto["Whh"])
    close("loop dL/dWhh", loop["Whh"], seed["dL/dWhh"])


def test_shorthand_1_minus_h2_holds_only_for_tanh():
    """BPTT2 writes dL/dh3 = dL/dh4 ⋅ (1 − h4²) ⋅ Whh; for sigmoid that is wrong, act'(z4) is right."""
    params, x, h0, y_true = model(4, seed=3)
    seed = manual.seed.four_step(params, *x, h0, y_true, activation="sigmoid")
    literal = (seed["dL/dh4"] * (1 - seed["h4"] ** 2)) @ params["Whh"]
    auto = reference.gradients(params, x, y_true, h0=h0, activation="sigmoid")["h"][2]
    assert np.abs(literal - auto).max() > 0.1 * np.abs(auto).max()
    close("dL/dh3", seed["dL/dh3"], auto)


def test_dy_dh_is_Why_only_for_identity_output():
    """With a softmax output, dL/dh_T = (dL/dy)·Why is wrong; dL/do·Why (softmax folded in) is right."""
    params, x, h0, _ = model(2, seed=4)
    cls = np.array([1])
    auto = reference.gradients(params, x, cls, h0=h0, loss="cross_entropy")
    o = torch.tensor(manual.forward(params, x, cls, h0=h0, loss="cross_entropy")["y"][0]).log()
    y = torch.softmax(o, -1).detach().requires_grad_()  # y = fy(o): differentiate L in y directly
    torch.nn.functional.nll_loss(y.log(), torch.tensor(cls)).backward()
    naive = y.grad.numpy() @ params["Why"]
    assert np.abs(naive - auto["h"][1]).max() > 0.1 * np.abs(auto["h"][1]).max()
