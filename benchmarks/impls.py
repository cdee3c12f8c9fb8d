"""What the benchmarks time: problems, implementations, flop counts, peak memory.

Every implementation computes the gradients of the same many-to-one tanh RNN
with a mean-squared-error loss (the seed's model), forward and backward:

* ``manual``   manual.gradients: ``manual-numpy`` (the array-API backend on NumPy),
               ``manual-numba`` (the compiled backend, the ``fast`` extra),
               ``manual-torch`` (torch tensors, CPU or CUDA);
* ``floor``    manual's own matrix products alone, the same shapes and count, in
               NumPy (``floor-numpy``) or torch (``floor-torch``): what no
               implementation of these equations can go below;
* ``autograd`` reference.gradients: torch.autograd on the unrolled model;
* ``nn.RNN``   torch.nn.RNN + a linear output, forward, loss, backward (cuDNN
               on CUDA); the module is built once, outside the timed part.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import manual
import reference
from contract.cells import CELLS
from contract.spec import GATES, TORCH_MODULE, RNNConfig, param_shapes
from oracle.cases.module import run_module

O = 16  # outputs of the read-out layer
SIZES = {"small": (50, 1, 16, 32), "medium": (100, 32, 64, 128), "large": (200, 64, 256, 512),
         "wide": (100, 16, 1024, 1024)}
T_SWEEP = [(T, 16, 64, 128) for T in (25, 50, 100, 200, 400)]
H_SWEEP = [(100, 16, 64, H) for H in (32, 64, 128, 256, 512)]
LONG = (100_000, 1, 16, 32)  # float64
MEMORY_SIZES = ("large", "wide")  # peak memory is measured at these and at LONG


def flops(T: int, B: int, D: int, H: int) -> float:
    """Multiply-adds ×2 of forward + backward (read-out at the last step only, negligible otherwise).

    forward: x Wxhᵀ 2TBDH, h Whhᵀ 2TBH²; backward: dz Whh 2TBH², dWhh 2TBH², dWxh 2TBDH, dx 2TBDH.
    """
    return 6.0 * T * B * H * H + 6.0 * T * B * D * H


INITS = ("bench", "default", "orthogonal")


def inputs(T: int, B: int, D: int, H: int, dtype: str = "float32", lib: str = "numpy", device: str = "cpu",
           seed: int = 0, init: str = "bench") -> dict:
    """Parameters, x and target of one benchmark problem. ``init``:

    * ``bench``: Whh entries N(0, 0.9²/H), spectral radius ≈ 0.9 (the circular law); x ~ N(0, 1). At the large
      size 15 % of float32 dL/dz is subnormal without the flush: the gradient vanishes.
    * ``default``: torch.nn.RNN's and nn.Linear's own initialisation, every weight and bias U(−1/√H, 1/√H)
      (spectral radius of Whh ≈ 1/√3 ≈ 0.58), x ~ N(0, 1): vanishes faster still.
    * ``orthogonal``: Whh orthogonal (every |eigenvalue| = 1), x ~ N(0, 0.01²), so tanh' ≈ 1: the gradient
      keeps its size over T steps; nothing subnormal anywhere. The non-vanishing baseline.
    """
    rng = np.random.default_rng(seed)
    if init == "default":
        k = 1 / np.sqrt(H)
        u = lambda *shape: rng.uniform(-k, k, shape)  # noqa: E731
        p = {"Wxh": u(H, D), "Whh": u(H, H), "bh": u(H) + u(H), "Why": u(O, H), "by": u(O)}
        x = rng.normal(0, 1, (T, B, D))
    elif init in ("bench", "orthogonal"):
        p = {"Wxh": rng.normal(0, 1 / np.sqrt(D), (H, D)), "Whh": rng.normal(0, 0.9 / np.sqrt(H), (H, H)),
             "bh": rng.normal(0, 0.1, H), "Why": rng.normal(0, 1 / np.sqrt(H), (O, H)), "by": rng.normal(0, 0.1, O)}
        x = rng.normal(0, 1, (T, B, D))
        if init == "orthogonal":
            p["Whh"] = np.linalg.qr(rng.normal(size=(H, H)))[0]
            x = x * 0.01
    else:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    y = rng.normal(0, 1, (B, O))
    if lib == "numpy":
        c = lambda a: a.astype(dtype)  # noqa: E731
    else:
        c = lambda a: torch.from_numpy(a).to(device=device, dtype=getattr(torch, dtype))  # noqa: E731
    return {"params": {k: c(v) for k, v in p.items()}, "x": c(x), "target": c(y)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make(impl: str, size: tuple, dtype: str, device: str, init: str = "bench"):
    """(callable timed, callable returning the gradient set once for the correctness check; None for a floor)."""
    T, B, D, H = size
    if impl in ("manual-numpy", "manual-numba"):
        i = inputs(*size, dtype, init=init)
        f = functools.partial(manual.gradients, i["params"], i["x"], i["target"],
                              backend="array-api" if impl == "manual-numpy" else "numba")
        return f, f
    if impl in ("floor-numpy", "floor-torch"):
        return floor(size, dtype, impl[6:], device), None
    i = inputs(*size, dtype, "torch", device, init=init)
    if impl == "manual-torch":
        f = functools.partial(manual.gradients, i["params"], i["x"], i["target"])
    elif impl == "autograd":
        f = functools.partial(reference.gradients, i["params"], i["x"], i["target"])
    elif impl == "nn.RNN":
        return _nn_rnn(i, size, dtype, device)
    else:
        raise ValueError(f"impl must be manual-numpy, manual-numba, manual-torch, floor-numpy, floor-torch, "
                         f"autograd or nn.RNN; got {impl!r}")

    def timed():
        f()
        sync(device)

    return timed, f


def _nn_rnn(i: dict, size: tuple, dtype: str, device: str):
    T, B, D, H = size
    dt = getattr(torch, dtype)
    rnn = torch.nn.RNN(D, H, dtype=dt, device=device)
    out_layer = torch.nn.Linear(H, O, dtype=dt, device=device)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(i["params"]["Wxh"])
        rnn.weight_hh_l0.copy_(i["params"]["Whh"])
        rnn.bias_ih_l0.copy_(i["params"]["bh"])
        rnn.bias_hh_l0.zero_()
        out_layer.weight.copy_(i["params"]["Why"])
        out_layer.bias.copy_(i["params"]["by"])
    x = i["x"].clone().requires_grad_()
    h0 = torch.zeros(1, B, H, dtype=dt, device=device, requires_grad=True)
    params = [*rnn.parameters(), *out_layer.parameters()]

    def step():
        for q in (*params, x, h0):
            q.grad = None
        with warnings.catch_warnings():  # torch's Python side does not count bfloat16 as cuDNN-acceptable, so
            # flatten_parameters() leaves the weights apart while cuDNN (≥ 9.13) runs them, and warns each call
            warnings.filterwarnings("ignore", "RNN module weights are not part of single contiguous chunk",
                                    UserWarning)
            out, _ = rnn(x, h0)
        torch.nn.functional.mse_loss(out_layer(out[-1]), i["target"]).backward()
        sync(device)

    def grads():
        step()
        return {"Wxh": rnn.weight_ih_l0.grad, "Whh": rnn.weight_hh_l0.grad, "bh": rnn.bias_ih_l0.grad,
                "Why": out_layer.weight.grad, "by": out_layer.bias.grad, "h0": h0.grad[0], "x": x.grad}

    return step, grads


def _operands(shapes: dict, dtype: str, lib: str, device: str):
    """(random operands of ``shapes``, matmul into ``out=``, ``empty``) in the library, dtype and device: what a
    floor times with."""
    rng = np.random.default_rng(0)
    if lib == "numpy":
        a = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}
        mm, empty = (lambda x, y, out: np.matmul(x, y, out=out)), (lambda *s: np.empty(s, dtype))
    else:
        a = {k: torch.from_numpy(rng.normal(size=s)).to(device=device, dtype=getattr(torch, dtype))
             for k, s in shapes.items()}
        mm = lambda x, y, out: torch.matmul(x, y, out=out)  # noqa: E731
        empty = lambda *s: torch.empty(s, device=device, dtype=getattr(torch, dtype))  # noqa: E731
    return a, mm, empty


def floor(size: tuple, dtype: str, lib: str = "numpy", device: str = "cpu"):
    """manual.gradients' matrix products alone (many-to-one, the benchmark's model), into preallocated outputs:

    forward   X Wxhᵀ (T·B, D)(D, H) once; h_{t-1} Whhᵀ (B, H)(H, H) T times; h_T Whyᵀ (B, H)(H, O) once
    backward  do Why (B, O)(O, H) once; dz_{t+1} Whh (B, H)(H, H) T − 1 times, dz_1 Whh once;
              dWhh, dWxh (H, T·B)(T·B, H|D); dx (T·B, H)(H, D); dWhy (O, B)(B, H)
    """
    T, B, D, H = size
    shapes = {"X": (T * B, D), "Wxh": (H, D), "Whh": (H, H), "Why": (O, H), "Z": (T * B, H), "h": (B, H),
              "do": (B, O)}
    a, mm, empty = _operands(shapes, dtype, lib, device)
    o = {"Z": empty(T * B, H), "h": empty(B, H), "o": empty(B, O), "dWhh": empty(H, H), "dWxh": empty(H, D),
         "dx": empty(T * B, D), "dWhy": empty(O, H)}
    WxhT, WhhT, WhyT, ZT, doT = a["Wxh"].T, a["Whh"].T, a["Why"].T, a["Z"].T, a["do"].T

    def f():
        mm(a["X"], WxhT, o["Z"])
        for _ in range(T):
            mm(a["h"], WhhT, o["h"])
        mm(a["h"], WhyT, o["o"])
        mm(a["do"], a["Why"], o["h"])
        for _ in range(T):
            mm(a["h"], a["Whh"], o["h"])
        mm(ZT, a["Z"], o["dWhh"])
        mm(ZT, a["X"], o["dWxh"])
        mm(a["Z"], a["Wxh"], o["dx"])
        mm(doT, a["h"], o["dWhy"])
        sync(device)

    return f


def cell_floor(mode: str, size: tuple, dtype: str, lib: str = "numpy", device: str = "cpu"):
    """manual.module_gradients' matrix products alone for one LSTM / GRU (torch's form) layer, into preallocated
    outputs, G = 4H (LSTM) or 3H (GRU):

    forward   X W_ihᵀ (T·B, I)(I, G) once; h_{t-1} W_hhᵀ (B, H)(H, G) T times
    backward  dL/da_t W_hh (B, G)(G, H) T times; dW_hh, dW_ih (G, T·B)(T·B, H|I); dx (T·B, G)(G, I)

    A practical floor: an implementation that makes these products as that library's calls spends this on them.
    """
    T, B, I, H = size  # noqa: E741
    G = GATES[mode] * H  # gate rows (contract.spec: an Elman layer 1, the LSTM 4, the GRU 3)
    shapes = {"X": (T * B, I), "Wih": (G, I), "Whh": (G, H), "A": (T * B, G), "Hs": (T * B, H), "h": (B, H),
              "a": (B, G)}
    a, mm, empty = _operands(shapes, dtype, lib, device)
    o = {"A": empty(T * B, G), "a": empty(B, G), "h": empty(B, H), "dWhh": empty(G, H), "dWih": empty(G, I),
         "dx": empty(T * B, I)}
    row_major = np.ascontiguousarray if lib == "numpy" else (lambda t: t.contiguous())  # as manual keeps W_hhᵀ
    WihT, WhhT, AT = a["Wih"].T, row_major(a["Whh"].T), a["A"].T

    def f():
        mm(a["X"], WihT, o["A"])
        for _ in range(T):
            mm(a["h"], WhhT, o["a"])
        for _ in range(T):
            mm(a["a"], a["Whh"], o["h"])
        mm(AT, a["Hs"], o["dWhh"])
        mm(AT, a["X"], o["dWih"])
        mm(a["A"], a["Wih"], o["dx"])
        sync(device)

    return f


@functools.lru_cache(maxsize=8)
def truth(size: tuple, dtype: str, init: str = "bench") -> dict:
    """Float64 gradients on the dtype-rounded inputs (autograd; nn.RNN for the long sequence). NumPy has no
    bfloat16: its inputs are rounded through torch, as ``inputs(..., lib="torch")`` rounds them."""
    if dtype == "bfloat16":
        i = inputs(*size, "bfloat16", "torch", init=init)
        w = lambda a: a.to(torch.float64).numpy()  # noqa: E731
    else:
        i = inputs(*size, dtype, init=init)
        w = lambda a: a.astype(np.float64)  # noqa: E731
    i64 = {"params": {k: w(v) for k, v in i["params"].items()}, "x": w(i["x"]), "target": w(i["target"])}
    fn = reference.nn_rnn_gradients if size[0] > 10_000 else reference.gradients
    return fn(i64["params"], i64["x"], i64["target"])


def machine() -> dict:
    """What the numbers were measured on."""
    from oracle.files.golden import environment

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), **environment()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def peak_rss_bytes(impl: str, size: tuple, dtype: str) -> int:
    """Peak resident memory of one call, in a fresh process (CPU implementations)."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("peakmem.py")), impl,
                          *map(str, size), dtype], capture_output=True, text=True, timeout=600, check=True)
    return int(out.stdout.split()[-1])


# ---------------------------------------------------------------- the module benchmark: 2 layers, bidirectional

MODULE_CONFIG = RNNConfig("RNN_TANH", 64, 128, num_layers=2, bidirectional=True)


def module_flops(T: int, B: int, I: int, H: int) -> float:  # noqa: E741
    """Forward + backward multiply-adds ×2 of both layers and directions (layer 1 reads 2H features)."""
    return 2 * (flops(T, B, I, H) + flops(T, B, 2 * H, H))


def module_config(size: tuple, mode: str = "RNN_TANH") -> RNNConfig:
    """The Elman benchmark: 2 layers, both directions; the other cells' benchmarks: one layer, one direction (the
    sLSTM with 4 heads, the published default)."""
    T, B, I, H = size  # noqa: E741
    if mode == "RNN_TANH":
        return RNNConfig("RNN_TANH", I, H, num_layers=2, bidirectional=True)
    return RNNConfig(mode, I, H, num_heads=4 if "num_heads" in CELLS[mode].options else 1)


def module_inputs(size: tuple, dtype: str, lib: str = "numpy", device: str = "cpu", cast64: bool = False,
                  mode: str = "RNN_TANH") -> dict:
    """config, state_dict, input, hx, grad_output, grad_hn (and grad_cn, … of the other carried states, which
    start at zero); spectral radius of each
    weight_hh block ≈ 0.9 (entries N(0, 0.9²/H))."""
    T, B, I, H = size  # noqa: E741
    c = module_config(size, mode)
    L = c.num_layers * c.dirs
    rng = np.random.default_rng(0)
    sd = {k: rng.normal(0, (0.9 if "weight_hh" in k else 1.0) / np.sqrt(s[1] if len(s) == 2 else H), s)
          for k, s in param_shapes(c).items()}
    sd.update({k: 1 + np.sqrt(H) * v / 2 for k, v in sd.items() if k.startswith("ln_") and "weight" in k})  # gains ≈ 1
    arrays = {"input": rng.normal(0, 1, (T, B, I)), "hx": np.zeros((L, B, H)),
              "grad_output": rng.normal(0, 1, (T, B, c.dirs * H)), "grad_hn": rng.normal(0, 1, (L, B, H))}
    for st in c.cell.carried[1:]:
        arrays[f"grad_{st}n"] = rng.normal(0, 1, (L, B, H))
    if lib == "numpy":
        conv = lambda a: a.astype(dtype).astype(np.float64) if cast64 else a.astype(dtype)  # noqa: E731
    else:
        conv = lambda a: torch.from_numpy(a).to(device=device, dtype=getattr(torch, dtype))  # noqa: E731
    out = {"config": c.as_dict(), "state_dict": {k: conv(v) for k, v in sd.items()},
           **{k: conv(v) for k, v in arrays.items()}, "lengths": None}
    if c.has_cell_state:
        out["hx"] = (out["hx"], *(conv(np.zeros((L, B, H))) for _ in c.cell.carried[1:]))
    return out


def make_module(impl: str, size: tuple, dtype: str, device: str = "cpu", mode: str = "RNN_TANH"):
    """(callable timed, callable returning the gradient set once; None for a floor) for a module benchmark."""
    i = module_inputs(size, dtype, "numpy" if impl == "manual-numpy" else "torch", device, mode=mode)
    if impl in ("manual-numpy", "manual-torch", "autograd"):
        f = functools.partial(run_module, manual.module_gradients if impl != "autograd" else
                              reference.unrolled_module_gradients, i)

        def timed():
            f()
            sync(device)

        return timed, f
    if impl in ("floor-numpy", "floor-torch"):
        return cell_floor(mode, size, dtype, impl[6:], device), None
    modules = {f"nn.{c.torch_module}" for c in CELLS.values() if c.torch_module}  # every cell's row that has one
    if impl not in modules:
        raise ValueError(f"impl must be manual-numpy, manual-torch, autograd or one of {sorted(modules)}; got {impl!r}")
    c = RNNConfig(**i["config"])
    rnn = getattr(torch.nn, TORCH_MODULE[c.mode])(**c.torch_kwargs(), dtype=getattr(torch, dtype), device=device)
    rnn.load_state_dict(i["state_dict"])
    x = i["input"].clone().requires_grad_()
    hx = i["hx"]
    state = tuple(a.clone().requires_grad_() for a in hx) if isinstance(hx, tuple) else hx.clone().requires_grad_()
    leaves = state if isinstance(state, tuple) else (state,)

    def step():
        for q in (*rnn.parameters(), x, *leaves):
            q.grad = None
        out, last = rnn(x, state)
        finals = [out, *(last if isinstance(last, tuple) else (last,))]
        upstream = [i["grad_output"], i["grad_hn"]] + ([i["grad_cn"]] if c.has_cell_state else [])
        torch.autograd.backward(finals, upstream)
        sync(device)

    def grads():
        step()
        g = {**{k: v.grad for k, v in rnn.named_parameters()}, "input": x.grad, "hx": leaves[0].grad}
        if c.has_cell_state:
            g["cx"] = leaves[1].grad
        return g

    return step, grads
