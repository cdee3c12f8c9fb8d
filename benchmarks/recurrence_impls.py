"""What the recurrence benchmarks time: the gated delta rule's forward + backward at the issue's sizes.

* ``manual-numpy``, ``manual-torch``: manual.recurrence_gradients (the array-API code on NumPy or torch), the state
  checkpointed every ⌈√T⌉ steps, no per-step dL/dS_t (``per_step=False``: what a training step needs);
* ``autograd``: reference.unrolled_recurrence_gradients, torch.autograd through the unrolled steps, each step in its
  matrix form, likewise without per-step dL/dS_t (no ``retain_grad``).

* ``fla-chunk`` (CUDA only): the public library's chunked Triton kernel, ``chunk_gated_delta_rule`` of fla-core,
  forward and its own backward through torch.autograd; timed beside the others, not judged here (``bptt check``
  is how a kernel is judged).

All compute dq, dk, dv, dg, dβ and d initial_state for L driven by dL/do.
"""

from __future__ import annotations

import numpy as np
import torch

import manual
import reference

# name → ((B, T, H, K, V), the packed sequences' lengths or None)
RECURRENCE_SIZES = {"batch": ((2, 256, 4, 64, 64), None), "packed": ((1, 2048, 4, 64, 64), (256,) * 8)}
VARIANT = "gated_delta_rule"


def recurrence_inputs(name: str, dtype: str = "float32", lib: str = "numpy", device: str = "cpu",
                      seed: int = 0) -> dict:
    """The keyword arguments of one call: unit-norm keys, β ∈ [0, 1], e^g ∈ (0.9, 1], an initial state per
    sequence, dL/do."""
    (B, T, H, K, V), lengths = RECURRENCE_SIZES[name]
    rng = np.random.default_rng(seed)
    N = len(lengths) if lengths else B
    k = rng.normal(size=(B, T, H, K))
    a = {"q": rng.normal(size=(B, T, H, K)), "k": k / np.linalg.norm(k, axis=-1, keepdims=True),
         "v": rng.normal(size=(B, T, H, V)), "g": np.log(rng.uniform(0.9, 1.0, (B, T, H))),
         "beta": rng.uniform(0.0, 1.0, (B, T, H)), "initial_state": rng.normal(0, 0.5, (N, H, K, V)),
         "grad_o": rng.normal(size=(B, T, H, V))}
    a = {n: x.astype(dtype) for n, x in a.items()}
    if lib == "torch":
        a = {n: torch.from_numpy(x).to(device) for n, x in a.items()}
    return {"variant": VARIANT, **a, "cu_seqlens": None if not lengths else list(np.cumsum([0, *lengths]))}


def _library_chunk(a: dict):
    """The library's chunked kernel as a call returning the gradients (ImportError without fla-core's Triton)."""
    from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule

    names = ("q", "k", "v", "g", "beta", "initial_state")
    cu = None if a["cu_seqlens"] is None else torch.tensor(a["cu_seqlens"], device=a["q"].device)

    def once():
        x = {n: a[n].detach().clone().requires_grad_(True) for n in names}
        o, _ = chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                                      output_final_state=True, cu_seqlens=cu)
        o.backward(a["grad_o"])
        return {n: x[n].grad for n in names}
    return once


def make_recurrence(impl: str, name: str, dtype: str = "float32", device: str = "cpu"):
    """A zero-argument call of ``impl`` on problem ``name``, and the same call returning its gradients."""
    lib = "numpy" if impl == "manual-numpy" else "torch"
    a = recurrence_inputs(name, dtype, lib, device)
    if impl.startswith("manual"):
        def once():
            return manual.recurrence_gradients(**a, per_step=False)
    elif impl == "autograd":
        def once():
            return reference.unrolled_recurrence_gradients(**a, per_step=False)
    elif impl == "fla-chunk":
        once = _library_chunk(a)
    else:
        raise ValueError(f"impl must be manual-numpy, manual-torch or autograd; got {impl!r}")

    def timed():
        once()
        if device == "cuda":
            torch.cuda.synchronize()
    return timed, once
