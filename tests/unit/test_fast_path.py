"""The fast path's own hazards: reused workspace buffers, threads, in-place kernels on every library."""

import threading

import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from helpers import assert_grads_match, call

import manual
import reference
from manual.kernels import _array_api, kernels
from oracle.cases.seed import Case

CASE = Case("many-to-many", "tanh", "mse", T=6, B=3, D=4, H=5, O=2)


def test_results_do_not_alias_the_workspace():
    """A second call with the same shapes must not change what the first call returned."""
    first = call(manual.gradients, CASE.inputs(), CASE.kwargs)
    kept = {k: v.copy() for k, v in first.items()}
    other = Case("many-to-many", "tanh", "mse", T=6, B=3, D=4, H=5, O=2, dtype="float64")
    inputs = other.inputs()
    inputs["x"] = inputs["x"] * -2.0  # different numbers, same shapes: same workspace buffers
    call(manual.gradients, inputs, CASE.kwargs)
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k], err_msg=k)


def test_forward_returns_fresh_arrays():
    i = CASE.inputs()
    f1 = manual.forward(i["params"], i["x"], i["target"], h0=i["h0"], **CASE.kwargs)
    h = f1["h"].copy()
    manual.gradients(i["params"], 3 * i["x"], i["target"], h0=i["h0"], **CASE.kwargs)
    np.testing.assert_array_equal(f1["h"], h)


def test_shapes_and_libraries_alternating():
    """Workspace keyed by library, dtype, device and shape: alternating calls stay right."""
    cases = [CASE, Case("one-to-many", "relu", "bce", T=9, B=2, D=3, H=7, O=4), CASE]
    for case in cases:
        for to_torch in (False, True):
            i = case.inputs()
            if to_torch:
                i = {"params": {k: torch.from_numpy(v) for k, v in i["params"].items()},
                     "x": torch.from_numpy(i["x"]), "target": torch.from_numpy(i["target"]),
                     "h0": torch.from_numpy(i["h0"])}
            assert_grads_match(call(manual.gradients, i, case.kwargs),
                               call(reference.gradients, case.inputs(), case.kwargs), where=case.name)


def test_threads_get_their_own_workspace():
    inputs = [CASE.inputs() for _ in range(4)]
    for n, i in enumerate(inputs):
        i["x"] = i["x"] * (n + 1)
    want = [call(manual.gradients, i, CASE.kwargs) for i in inputs]
    got = [None] * 4

    def work(n):
        for _ in range(20):
            got[n] = call(manual.gradients, inputs[n], CASE.kwargs)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        for k in want[n]:
            np.testing.assert_array_equal(got[n][k], want[n][k], err_msg=f"thread {n}: {k}")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_native_kernels_equal_the_array_api_fallback(lib, activation):
    """NumPy's out= ufuncs and torch's fused in-place kernels compute what the plain array-API form does."""
    rng = np.random.default_rng(1)
    a, b, c, z = (rng.normal(size=s) for s in ((3, 4), (4, 5), (3, 5), (3, 5)))
    if lib == "torch":
        a, b, c, z = map(torch.from_numpy, (a, b, c, z))
    xp = array_namespace(a)
    results = []
    for k in (kernels(xp, activation), _array_api(activation)):
        c1, out1, out2, out3 = c * 1, c * 0, c * 0, c * 0
        k.mm_add(c1, a, b)
        k.mm_into(a, b, out1)
        k.mul_into(c, z, out2)
        k.act_into(z, out3)
        results.append([np.asarray(v) for v in (c1, out1, out2, out3)])
    for name, native, plain in zip(("mm_add", "mm_into", "mul_into", "act_into"), *results, strict=True):
        np.testing.assert_allclose(native, plain, rtol=1e-14, atol=1e-15, err_msg=name)
