"""Forward pass and backpropagation through time for the Elman RNN.

Batch rows, as torch.nn.RNN (shapes in the comments; S is the number of steps
the loss reads: 1 for many-to-one, T otherwise):

    z_t = x_t Wxhᵀ + h_{t-1} Whhᵀ + bh        h_t = act(z_t)
    o_t = h_t Whyᵀ + by                         y_t = fy(o_t)     L = Σ_s L_s

Backward, t = T … 1, in the order of the derivation's equations (docs/derivation.md):

    dL/dh_t = ∂L_t/∂h_t + dL/dz_{t+1} Whh      (direct + through the future)
    dL/dz_t = dL/dh_t ⊙ act'(z_t)
    dWhh = Σ_t dz_tᵀ h_{t-1}   dWxh = Σ_t dz_tᵀ x_t   dbh = Σ_t Σ_b dz_t
    dh0  = dz_1 Whh            dx_t = dz_t Wxh

Only the recurrence is inside the time loops; the input projection of all
steps is one matrix product before the forward loop, and every weight
gradient one matrix product after the backward loop (docs/design.md,
"Performance shape"). One code path serves NumPy and torch, CPU and CUDA.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Iterator, Mapping

import numpy as np
from array_api_compat import is_numpy_namespace

from contract import NonFiniteGradientError, Problem, all_finite, check_inputs, first_nonfinite_step
from contract.errors import BadType, BadValue
from manual import compiled
from manual.activations import ACTIVATIONS
from manual.cells.elman import run_backward, run_forward
from manual.errstate import numpy_quiet
from manual.kernels import kernels
from manual.losses import LOSSES
from manual.readout import read_logits, read_output, readout_backward


def detached(a):
    """A torch tensor that requires grad is detached: manual never builds a graph (anything else: as it is)."""
    return a.detach() if getattr(a, "requires_grad", False) else a


def detached_args(mapping, *arrays) -> tuple:
    """The arguments with every torch tensor that requires grad detached (``dict(rnn.named_parameters())`` works
    as ``rnn.state_dict()`` does): the mapping's values, then each of ``arrays`` (a pair, such as the LSTM's hx,
    too); anything else as it is, for the input checks to name."""
    m = {k: detached(v) for k, v in mapping.items()} if isinstance(mapping, Mapping) else mapping
    return (m, *((tuple if isinstance(a, tuple) else list)(map(detached, a)) if isinstance(a, (tuple, list))
                 else detached(a) for a in arrays))


def _check(params, x, target, h0, activation, loss, topology):
    params, x, target, h0 = detached_args(params, x, target, h0)
    p = check_inputs(params, x, target, h0, activation, loss, topology)
    if h0 is None:
        h0 = p.xp.zeros((p.B, p.H), dtype=p.dtype, device=p.device)  # (B, H)
    return p, params, x, target, h0


BACKENDS = ("auto", "numba", "array-api")
_default_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("bptt_backend", default=None)


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Within the block, ``backend=None`` means ``backend`` (e.g. to run a whole test suite on one backend);
    a default of ``"numba"`` applies where it can (NumPy float32/float64, numba installed), array-api elsewhere.
    It is a context variable: threads started inside the block do not see it (``BPTT_BACKEND`` reaches them).

    Outside any such block, ``backend=None`` means the environment variable ``BPTT_BACKEND`` if set (worker
    processes inherit it), else ``"auto"``.
    """
    token = _default_backend.set(_backend_name(backend))
    try:
        yield
    finally:
        _default_backend.reset(token)


def _backend_name(backend: object, arg: str = "backend") -> str:
    if backend not in BACKENDS:
        raise BadValue(f"{arg} must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}. "
                         "Remedy: 'auto' (numba for NumPy input when installed, else array-api).")
    return backend


def _default() -> str:
    name = _default_backend.get()
    if name is not None:
        return name
    env = os.environ.get("BPTT_BACKEND", "")
    return "auto" if not env else _backend_name(env, "the environment variable BPTT_BACKEND")


def _backend(backend: str | None, p: Problem) -> str:
    """The backend that runs this call: ``numba`` (``manual.compiled``) or ``array-api`` (``manual.cells.elman``)."""
    name = _default() if backend is None else _backend_name(backend)
    numpy_input = is_numpy_namespace(p.xp) and p.dtype in (np.float32, np.float64)
    if backend is None and name == "numba" and not (numpy_input and compiled.available()):
        return "array-api"  # a default (use_backend, BPTT_BACKEND) asks for numba where it applies
    if name == "auto":
        return "numba" if numpy_input and compiled.pays(p.B, p.H) and compiled.available() else "array-api"
    if name == "numba" and not compiled.available():
        raise BadValue("backend='numba' needs numba and SciPy, which are not installed. Remedy: pip install "
                         "'bptt-reference[fast]', or backend='array-api'.")
    if name == "numba" and not numpy_input:
        lib = "NumPy" if is_numpy_namespace(p.xp) else p.xp.__name__.split(".")[-1]
        raise BadType(f"backend='numba' computes on NumPy float32 or float64 arrays (native byte order); got {lib} "
                        "arrays of dtype "
                        f"{p.dtype}. Remedy: pass NumPy float32/float64 arrays (t.cpu().numpy()), or "
                        "backend='auto', which picks array-api for these.")
    return name


_workspace = threading.local()
WORKSPACE_MAX_BYTES = 64 * 2**20  # larger buffers are allocated per call, not kept


def _buffer(p: Problem, name: str, shape: tuple, reuse: bool):
    """An internal buffer (never handed to the caller), kept per thread and reused.

    Fresh large arrays cost page faults on every call (seen: 2 of 9 ms at
    (T, B, H) = (100, 32, 128)); a buffer of the same shape, dtype and device
    is reused instead. Contents are garbage: callers overwrite them.
    """
    if not reuse:
        return p.xp.empty(shape, dtype=p.dtype, device=p.device)
    cache = _workspace.__dict__.setdefault("buffers", {})
    key = (p.xp, p.dtype, p.device, shape)
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    arr = p.xp.empty(shape, dtype=p.dtype, device=p.device)
    if math.prod(shape) * p.xp.finfo(p.dtype).bits // 8 <= WORKSPACE_MAX_BYTES:
        cache[name] = (key, arr)
    return arr


def _forward(p: Problem, params, x, h0, reuse: bool = False, backend: str = "array-api"):
    """Hidden states of all steps: z (T, B, H) and hs (T+1, B, H) with hs[0] = h0.

    ``reuse``: z and hs come from the per-thread workspace (they must not
    leave the caller, who will overwrite them on the next call).
    """
    xp, T, B, D, H = p.xp, p.T, p.B, p.D, p.H
    Wxh, Whh, bh = params["Wxh"], params["Whh"], params["bh"]
    k = kernels(xp, p.activation)
    z = _buffer(p, "z", (T, B, H), reuse)  # (T, B, H)
    # input projection of every step at once: x_t Wxhᵀ + bh
    if p.topology == "one-to-many":  # x at step 1, zero input after
        z[...] = bh
        z[0, ...] = x @ Wxh.T + bh  # (B, H)
    else:
        k.mm_into(xp.reshape(x, (T * B, D)), Wxh.T, xp.reshape(z, (T * B, H)))
        z += bh
    hs = _buffer(p, "hs", (T + 1, B, H), reuse)  # (T+1, B, H)
    hs[0, ...] = h0
    if backend == "numba":  # the same loop, compiled (manual.compiled)
        compiled.forward(z, hs, np.ascontiguousarray(Whh.T), compiled.ACT_CODE[p.activation])
    else:
        run_forward(xp, k, z, hs, Whh)  # z_t = x_t Wxhᵀ + bh + h_{t-1} Whhᵀ, h_t = act(z_t), t = 1 … T
    return z, hs


def _raise_if_forward_overflowed(xp, hs) -> None:
    bad = first_nonfinite_step(xp, hs[1:, ...], backward=False)
    if bad is not None:
        raise NonFiniteGradientError("h (forward pass)", bad)


def _raise_if_output_overflowed(p: Problem, params, hs, target, y, L) -> None:
    """fy(o) and the loss must be finite; the error names the first step read where one is not."""
    xp, S = p.xp, y.shape[0]
    if all_finite(xp, y) and all_finite(xp, L):
        return
    bad = first_nonfinite_step(xp, y, backward=False)
    if bad is not None:
        raise NonFiniteGradientError("y (forward pass)", p.T - S + bad)
    o, yt = read_logits(p, params, hs, target)
    for s in range(S):  # only on failure: the loss of each step alone
        if not all_finite(xp, LOSSES[p.loss](o[s : s + 1, ...], yt[s : s + 1, ...])[1]):
            raise NonFiniteGradientError("loss (forward pass)", p.T - S + s + 1)
    raise NonFiniteGradientError("loss (forward pass)", None)  # only the sum over steps overflowed


def _compiled_gradients(p: Problem, params, x, target, h0) -> dict | None:
    """The gradient set from ``manual.compiled`` (one compiled call), or None when any of it is not finite."""
    def c(a):  # C-contiguous and writable: numba compiles one signature per layout and writeability
        return a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")

    T, B, D, O = p.T, p.B, p.D, p.O
    S = 1 if p.topology == "many-to-one" else T
    ce = p.loss == "cross_entropy"
    y_f = np.zeros((1, 1), p.dtype) if ce else c(target.reshape(S * B, O))  # (S·B, O)
    y_i = c(target.reshape(S * B)).astype(np.int64) if ce else np.zeros(1, np.int64)  # (S·B,)
    x2 = c(x) if p.topology == "one-to-many" else c(x.reshape(T * B, D))  # (T·B, D) or (B, D)
    dWxh, dWhh, dbh, dWhy, dby, dh0, dx, dh, dz, finite = compiled.seed_gradients(
        *(c(params[k]) for k in ("Wxh", "Whh", "bh", "Why", "by")), x2, y_f, y_i, c(h0),
        compiled.ACT_CODE[p.activation], compiled.LOSS_CODE[p.loss], compiled.TOPOLOGY_CODE[p.topology],
        float(np.finfo(p.dtype).tiny))
    if not finite:
        return None
    return {"Wxh": dWxh, "Whh": dWhh, "bh": dbh, "Why": dWhy, "by": dby, "h0": dh0,
            "x": dx if p.topology == "one-to-many" else dx.reshape(T, B, D), "h": dh, "z": dz}


@numpy_quiet
def forward(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
    backend: str | None = None,
) -> dict:
    """Run the model and return ``z``, ``h`` (T, B, H), ``y`` (S, B, O) and ``loss`` (0-d).

    Arguments as :func:`gradients`. ``y`` is fy(o) at the S steps the loss reads.
    Raises contract.NonFiniteGradientError when h, y or the loss overflowed,
    naming the first time step (or None where only a sum over steps did).
    """
    p, params, x, target, h0 = _check(params, x, target, h0, activation, loss, topology)
    z, hs = _forward(p, params, x, h0, backend=_backend(backend, p))
    _raise_if_forward_overflowed(p.xp, hs)
    y, L, _ = read_output(p, params, hs, target)
    _raise_if_output_overflowed(p, params, hs, target, y, L)
    return {"z": z, "h": hs[1:, ...], "y": y, "loss": L}


@numpy_quiet
def gradients(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
    backend: str | None = None,
) -> dict:
    """Hand-derived BPTT: the full gradient set of the loss.

    Args:
        params: mapping with ``Wxh`` (H, D), ``Whh`` (H, H), ``bh`` (H,),
            ``Why`` (O, H), ``by`` (O,), in torch.nn.RNN's layout.
        x: (T, B, D); for ``one-to-many`` (B, D), the input of step 1 (zero after).
        target: (B, O) floats, or (B,) integer classes for ``cross_entropy``,
            with a leading T axis unless the topology is ``many-to-one``.
        h0: (B, H) initial hidden state, or None for zeros.
        activation: ``tanh``, ``sigmoid``, ``relu`` or ``identity``.
        loss: ``mse``, ``cross_entropy`` or ``bce``.
        topology: ``many-to-one``, ``many-to-many`` or ``one-to-many``.
        backend: ``"numba"`` (the whole computation compiled, ``manual.compiled``;
            NumPy float32/float64 input, the ``fast`` extra), ``"array-api"``
            (``manual.cells.elman``, any library and device), ``"auto"``: numba
            where it applies, is installed and is the faster (small B·H:
            ``manual.compiled.pays``); None: ``"auto"`` unless
            :func:`use_backend` or ``BPTT_BACKEND`` says otherwise. Same
            equations, same results within the tolerance policy.

    Returns:
        dict with ``Wxh Whh bh Why by h0 x`` (each the shape of its tensor) and
        per step ``h`` = dL/dh_t and ``z`` = dL/dz_t, (T, B, H); in the caller's
        array library, dtype and device.

    Raises:
        TypeError, ValueError: bad input (the message names the argument).
        contract.NonFiniteGradientError: the recurrence overflowed; it names
            the first time step where a value stopped being finite. NumPy
            input runs under numpy.errstate (all ignored, the caller's state
            restored on exit), so no RuntimeWarning comes before it.
    """
    p, params, x, target, h0 = _check(params, x, target, h0, activation, loss, topology)
    xp, T, B, D, H = p.xp, p.T, p.B, p.D, p.H
    Wxh, Whh = params["Wxh"], params["Whh"]
    _, dact = ACTIVATIONS[p.activation]

    if _backend(backend, p) == "numba":
        grads = _compiled_gradients(p, params, x, target, h0)
        if grads is not None:
            return grads  # else not finite somewhere: the array-API code below names the step in its error
    z, hs = _forward(p, params, x, h0, reuse=True)  # (T, B, H), (T+1, B, H): workspace
    _, _, do = read_output(p, params, hs, target)  # dL/do (S, B, O)
    S = do.shape[0]
    dWhy, dby, direct = readout_backward(p, params, hs, do)  # (O, H), (O,), ∂L_t/∂h_t (S, B, H)

    dA = dact(z, hs[1:, ...])  # act'(z_t) of every step at once                (T, B, H)
    # direct terms ∂L_t/∂h_t = do_t Why, at the steps the loss reads
    dh = xp.empty((T, B, H), dtype=p.dtype, device=p.device)  # (T, B, H)
    dh[T - S :, ...] = direct
    dz = xp.empty((T, B, H), dtype=p.dtype, device=p.device)  # (T, B, H)
    k = kernels(xp, p.activation)
    # t = T … 1: dL/dh_t = ∂L_t/∂h_t (where the loss reads, t > T − S) + dL/dz_{t+1} Whh;
    # dL/dz_t = dL/dh_t ⊙ act'(z_t); the cell's backward step (manual.cells.elman)
    dh0 = run_backward(xp, k, Whh, dA, dh, dz, first_direct=T - S)  # dL/dh0 = dz_1 Whh         (B, H)
    if not all_finite(xp, dz):  # one check for both passes: a NaN/Inf anywhere reaches dz
        _raise_if_forward_overflowed(xp, hs)
        name, steps = ("dL/dh", dh) if first_nonfinite_step(xp, dh, True) else ("dL/dz", dz)
        bad = first_nonfinite_step(xp, steps, backward=True)
        if bad is not None:
            raise NonFiniteGradientError(name, bad)

    dz2 = xp.reshape(dz, (T * B, H))  # (T·B, H)
    dWhh = dz2.T @ xp.reshape(hs[:T, ...], (T * B, H))  # Σ_t dz_tᵀ h_{t-1}    (H, H)
    dbh = xp.sum(dz2, axis=0)  # Σ_t Σ_b dz_t                                  (H,)
    if p.topology == "one-to-many":
        dWxh = dz[0, ...].T @ x  # only x_1 is nonzero                          (H, D)
        dx = dz[0, ...] @ Wxh  # dL/dx_1 = dz_1 Wxh                             (B, D)
    else:
        x2 = xp.reshape(x, (T * B, D))  # (T·B, D)
        dWxh = dz2.T @ x2  # Σ_t dz_tᵀ x_t                                      (H, D)
        dx = xp.reshape(dz2 @ Wxh, (T, B, D))  # dL/dx_t = dz_t Wxh             (T, B, D)
    grads = {"Wxh": dWxh, "Whh": dWhh, "bh": dbh, "Why": dWhy, "by": dby, "h0": dh0, "x": dx, "h": dh, "z": dz}
    for name, g in grads.items():  # dz was finite; a sum over steps can still overflow (float32, float16)
        if name not in ("h", "z") and not all_finite(xp, g):
            raise NonFiniteGradientError(name, first_nonfinite_step(xp, g, True) if name == "x" and g.ndim == 3
                                         else None)
    return grads
