"""Property test: manual equals autograd over random shapes, topologies, activations, losses, seeds."""

import numpy as np
from helpers import assert_grads_match
from hypothesis import given, settings
from hypothesis import strategies as st

import manual
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.truth import truth


@settings(max_examples=80, deadline=None)
@given(T=st.integers(1, 9), B=st.integers(1, 4), D=st.integers(1, 5), H=st.integers(1, 6),
       O=st.integers(1, 4), topology=st.sampled_from(TOPOLOGIES), activation=st.sampled_from(ACTIVATIONS),
       loss=st.sampled_from(LOSSES), seed=st.integers(0, 2**32 - 1), with_h0=st.booleans(),
       scale=st.floats(0.1, 2.0))
def test_manual_equals_autograd(T, B, D, H, O, topology, activation, loss, seed, with_h0, scale):
    rng = np.random.default_rng(seed)
    params = {"Wxh": rng.normal(0, scale, (H, D)), "Whh": rng.normal(0, scale / np.sqrt(H), (H, H)),
              "bh": rng.normal(0, scale, H), "Why": rng.normal(0, scale, (O, H)), "by": rng.normal(0, 1, O)}
    x = rng.normal(0, 1, (B, D) if topology == "one-to-many" else (T, B, D))
    lead = () if topology == "many-to-one" else (T,)
    if loss == "cross_entropy":
        target = rng.integers(0, O, lead + (B,))
    else:
        target = rng.uniform(0, 1, lead + (B, O))
    h0 = rng.normal(0, 1, (B, H)) if with_h0 else None
    kw = {"h0": h0, "activation": activation, "loss": loss, "topology": topology}
    want = truth({"params": params, "x": x, "target": target, "h0": h0},
                       {"activation": activation, "loss": loss, "topology": topology})
    where = f"{topology}/{activation}/{loss} T{T} B{B} D{D} H{H} O{O}"
    assert_grads_match(manual.gradients(params, x, target, **kw), want, dtype="float64", where=where)
