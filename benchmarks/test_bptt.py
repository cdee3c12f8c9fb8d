"""Manual BPTT against autograd and torch.nn.RNN, forward + backward, one run, grouped side by side.

    python -m pytest benchmarks --benchmark-json=bench.json      # then: python benchmarks/summarize.py bench.json

Each benchmark first checks, outside the timed part, that the gradients it
times are right (against the float64 truth, oracle's tolerance policy).
"""

import numpy as np
import pytest
import torch
from impls import (
    H_SWEEP,
    LONG,
    MEMORY_SIZES,
    MODULE_CONFIG,
    SIZES,
    T_SWEEP,
    flops,
    machine,
    make,
    make_module,
    module_config,
    module_flops,
    module_inputs,
    peak_rss_bytes,
    sync,
    truth,
)

from contract.cells import CELLS
from contract.spec import step_names
from manual import compiled
from oracle.cases.module import module_truth, to_time_major
from oracle.judge import compare
from oracle.policy import BENCH_BF16_CAP, REF_FACTOR

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
NUMBA = ["manual-numba"] if compiled.available() else []  # the compiled backend: the `fast` extra
CPU_IMPLS = ["manual-numpy", *NUMBA, "manual-torch", "autograd", "nn.RNN", "floor-numpy", "floor-torch"]
CUDA_IMPLS = ["manual-torch", "autograd", "nn.RNN", "floor-torch"]
MACHINE = machine()


def check(grads_once, size, dtype, device, init="bench"):
    """The gradients this benchmark times equal the float64 truth (outside the timed part); returns them."""
    got = grads_once()
    want = truth(size, dtype, init)
    ref = None
    if dtype != "float64":  # judged next to autograd's own error in the same dtype, as the oracle does
        _, auto = make("autograd", size, dtype, device, init) if size[0] <= 10_000 else \
            make("nn.RNN", size, dtype, device)
        ref = auto()
    # h, z: judged when the implementation gives them; the truth's h also sets h0's scale (dL/dh_0 is step 0
    # of h), without which a vanishing dL/dh0 (below float32's range) would be judged on its own scale
    report = compare(got, want, dtype=dtype, ref=ref, optional=("h", "z"))
    if dtype == "bfloat16":  # past the oracle's MAX_TOL at these sizes: oracle.policy.BENCH_BF16_CAP says why
        bad = [t.name for t in report.failures if t.why or t.nonfinite or t.ref_normalised is None
               or t.normalised > min(REF_FACTOR * t.ref_normalised, BENCH_BF16_CAP)]
        assert not bad, (f"{bad} further from the truth than {REF_FACTOR}× autograd's bfloat16 error (at most "
                         f"{BENCH_BF16_CAP})"
                         f"\n{report}")
    else:
        assert report.ok, str(report)
    return got


def run(benchmark, impl, size, dtype, device, group, rounds=None, init="bench"):
    timed, once = make(impl, size, dtype, device, init)
    got = check(once, size, dtype, device, init) if once is not None else None  # a floor computes no gradient
    T, B, D, H = size
    benchmark.group = group
    benchmark.extra_info.update({"impl": impl, "T": T, "B": B, "D": D, "H": H, "dtype": dtype, "device": device,
                                 "flops": flops(*size), "machine": MACHINE, "init": init})
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if rounds:
        benchmark.pedantic(timed, rounds=rounds, warmup_rounds=1)
    else:
        benchmark(timed)
    if device == "cuda":
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated()
    elif benchmark.enabled and (size in [SIZES[s] for s in MEMORY_SIZES] or size == LONG):
        benchmark.extra_info["peak_bytes"] = peak_rss_bytes(impl, size, dtype)
    return got


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SIZES))
def test_cpu(benchmark, name, dtype, impl):
    run(benchmark, impl, SIZES[name], dtype, "cpu", f"{name} {SIZES[name]} {dtype} cpu")


@needs_cuda
@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(SIZES))
def test_cuda(benchmark, name, dtype, impl):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    run(benchmark, impl, SIZES[name], dtype, "cuda", f"{name} {SIZES[name]} {dtype} cuda")


SWEEP = [("sweep-T", s) for s in T_SWEEP] + [("sweep-H", s) for s in H_SWEEP]
VANISHING = {"large": SIZES["large"], "T1000": (1000, *SIZES["large"][1:])}
MANUAL_CPU = ["manual-numpy", *NUMBA, "manual-torch"]


@pytest.mark.parametrize("impl", ["manual-numpy", *NUMBA, "manual-torch", "autograd", "nn.RNN"])
@pytest.mark.parametrize("name", list(VANISHING))
def test_vanishing(benchmark, name, impl):
    """torch.nn.RNN's default initialisation, x ~ N(0, 1), MSE on a read-out of h_T, float32: the gradient
    vanishes through float32's subnormal range (docs/numerics.md). ``subnormal_operands``: the
    multiplications per call that take a subnormal operand in the backward pass: counted on manual's own dL/dz,
    and for the others estimated from the float64 truth's dL/dz entries in float32's subnormal range, each of
    which a gradual-underflow implementation multiplies 2H + 2D times (dz Whh, dWhh, dWxh, dx)."""
    size = VANISHING[name]
    got = run(benchmark, impl, size, "float32", "cpu", f"vanishing {name} {size} float32 cpu default-init",
              rounds=3, init="default")
    T, B, D, H = size
    tiny = np.finfo(np.float32).tiny
    if impl.startswith("manual"):
        dz = got["z"].numpy() if hasattr(got["z"], "numpy") else got["z"]
    else:
        dz = truth(size, "float32", "default")["z"]
    n = int(np.count_nonzero((dz != 0) & (np.abs(dz) < tiny)))
    benchmark.extra_info["subnormal_operands"] = n * (2 * H + 2 * D)


@pytest.mark.parametrize("impl", MANUAL_CPU)
@pytest.mark.parametrize("name", list(VANISHING))
def test_not_vanishing(benchmark, name, impl):
    """The same sizes with an orthogonal Whh and small inputs: no subnormal anywhere, manual's baseline."""
    size = VANISHING[name]
    run(benchmark, impl, size, "float32", "cpu", f"not-vanishing {name} {size} float32 cpu orthogonal",
        rounds=3, init="orthogonal")


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("kind, size", SWEEP, ids=[f"{k}-T{s[0]}-H{s[3]}" for k, s in SWEEP])
def test_sweep(benchmark, kind, size, impl):
    run(benchmark, impl, size, "float32", "cpu", f"{kind} {size} float32 cpu")


@pytest.mark.parametrize("impl", ["manual-numpy", *NUMBA, "manual-torch", "nn.RNN"])
def test_long_sequence(benchmark, impl):
    """T = 100,000: bounded memory, linear time (autograd's 100,000-node graph is left out: minutes)."""
    run(benchmark, impl, LONG, "float64", "cpu", f"long {LONG} float64 cpu", rounds=3)


PEAK_N = {"cpu": 1024, "cuda": 4096}


PEAK_CASES = [("numpy", "float32", "cpu"), ("numpy", "float64", "cpu"), ("torch", "float32", "cpu"),
              ("torch", "float64", "cpu"),
              pytest.param("torch", "float32", "cuda", marks=needs_cuda),
              pytest.param("torch", "bfloat16", "cuda", marks=needs_cuda)]


@pytest.mark.parametrize("shape", ["square", "recurrence"])
@pytest.mark.parametrize("lib, dtype, device", PEAK_CASES)
def test_matmul_peak(benchmark, lib, dtype, device, shape):
    """The machine's matrix-product GFLOP/s in this run: the yardstick for manual's GFLOP/s.

    ``square``: n×n by n×n, the peak. ``recurrence``: the product each time step of
    the "wide" size makes, (B×H)·(H×H) = (16×1024)·(1024×1024), which bounds the loop.
    """
    n = PEAK_N[device]
    m, k, n = (n, n, n) if shape == "square" else (SIZES["wide"][1], SIZES["wide"][3], SIZES["wide"][3])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(m, k)), rng.normal(size=(k, n))
    if lib == "numpy":
        a, b = a.astype(dtype), b.astype(dtype)
        out = np.empty((m, n), dtype)
        f = lambda: np.matmul(a, b, out=out)  # noqa: E731
    else:
        a, b = (torch.from_numpy(v).to(device=device, dtype=getattr(torch, dtype)) for v in (a, b))
        out = torch.empty((m, n), device=device, dtype=getattr(torch, dtype))

        def f():
            torch.matmul(a, b, out=out)
            sync(device)
    benchmark.group = f"matmul {shape} {device}"
    benchmark.extra_info.update({"impl": f"matmul-{lib}", "shape": shape, "dtype": dtype, "device": device,
                                 "flops": 2.0 * m * k * n, "machine": MACHINE})
    benchmark(f)


# ------------------------------------------------------------------ the module: 2 layers, both directions

MODULE_SIZE = (100, 32, 64, 128)  # (T, B, input_size, H)
MODULE_IMPLS = ["manual-numpy", "manual-torch", "autograd", "nn.RNN"]


@pytest.mark.parametrize("impl", MODULE_IMPLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_module_bidirectional(benchmark, impl, dtype):
    """torch.nn.RNN(64, 128, num_layers=2, bidirectional=True), upstream grad_output and grad_hn, tanh."""
    timed, once = make_module(impl, MODULE_SIZE, dtype)
    got = to_time_major(MODULE_CONFIG, {k: v.numpy() if hasattr(v, "numpy") else v for k, v in once().items()})
    want = module_truth(module_inputs(MODULE_SIZE, "float64" if dtype == "float64" else dtype, "numpy",
                                      cast64=True), draws=0)
    report = want.compare({k: got[k] for k in got if k in want.grads}, dtype=dtype,
                          optional=tuple(n for n in want.grads if n.startswith(("h_l", "z_l"))))
    if dtype == "float64":  # float32 is judged by the oracle's tests; here the timed code must not be wrong
        assert report.ok, str(report)
    T, B, I, H = MODULE_SIZE
    benchmark.group = f"module L2-bi {MODULE_SIZE} {dtype} cpu"
    benchmark.extra_info.update({"impl": impl, "T": T, "B": B, "D": I, "H": H, "dtype": dtype, "device": "cpu",
                                 "flops": module_flops(*MODULE_SIZE), "machine": MACHINE})
    benchmark(timed)


CELL_SIZES = {"medium": (100, 32, 64, 128), "large": (200, 64, 256, 512)}


# every cell whose row asks for a group (contract.cells): manual, autograd, torch's module where torch has one, and
# the floor (the cell's own matrix products) where the recurrence is a matrix product
CELL_IMPLS = [(mode, impl) for mode, row in CELLS.items() if row.benchmark
              for impl in ("manual-numpy", "manual-torch", "autograd",
                           *([f"nn.{row.torch_module}"] if row.torch_module else []),
                           *(("floor-numpy", "floor-torch") if row.recurrent == "matrix" else ()))]


def _numpy(v):
    return v.detach().cpu().numpy() if hasattr(v, "numpy") else v


@pytest.mark.parametrize("mode, impl", CELL_IMPLS, ids=[f"{m}-{i}" for m, i in CELL_IMPLS])
@pytest.mark.parametrize("name", list(CELL_SIZES))
def test_lstm_gru(benchmark, mode, name, impl):
    """One layer of each cell (nn.LSTM, nn.GRU, …), float32, upstream grad_output, grad_hn (and grad_cn), against
    manual and unrolled autograd in the same run. At the medium size the timed gradients are first checked against the
    float64 truth (a float64 run of the same inputs), outside the timed part."""
    _lstm_gru(benchmark, mode, name, impl, "cpu")


CUDA_CELL_IMPLS = [(m, i) for m, i in CELL_IMPLS if i not in ("manual-numpy", "floor-numpy")]


@needs_cuda
@pytest.mark.parametrize("mode, impl", CUDA_CELL_IMPLS, ids=[f"{m}-{i}" for m, i in CUDA_CELL_IMPLS])
@pytest.mark.parametrize("name", list(CELL_SIZES))
def test_lstm_gru_cuda(benchmark, mode, name, impl):
    """The same on CUDA, TF32 off: manual on torch CUDA against unrolled autograd and cuDNN's nn.LSTM / nn.GRU."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    _lstm_gru(benchmark, mode, name, impl, "cuda")


def _lstm_gru(benchmark, mode, name, impl, device):
    size, dtype = CELL_SIZES[name], "float32"
    timed, once = make_module(impl, size, dtype, device, mode=mode)
    if name == "medium" and once is not None:  # a floor computes no gradient
        got = {k: _numpy(v) for k, v in once().items()}
        want = module_truth(module_inputs(size, dtype, cast64=True, mode=mode), draws=0)
        report = want.compare({k: got[k] for k in got if k in want.grads}, dtype=dtype,
                              ref={k: v for k, v in got.items()} if impl == "autograd" else None,
                              optional=tuple(n for _, _, ns in step_names(module_config(size, mode))
                                             for n in ns.values()))
        assert report.ok, str(report)
    T, B, I, H = size
    benchmark.group = f"{mode} {size} {dtype} {device}"
    benchmark.extra_info.update({"impl": impl, "T": T, "B": B, "D": I, "H": H, "dtype": dtype, "device": device,
                                 "machine": MACHINE})
    benchmark.pedantic(timed, rounds=5 if name == "medium" else 3, warmup_rounds=1)


SCAN_IMPLS = ["loop-numpy", "scan-numpy", "loop-torch", "scan-torch"]


@pytest.mark.parametrize("impl", SCAN_IMPLS)
@pytest.mark.parametrize("mode", ["MINGRU", "MINLSTM"])
@pytest.mark.parametrize("name", list(CELL_SIZES))
def test_minimal_scan_against_loop(benchmark, name, mode, impl):
    """The minimal cells' forward pass over the whole sequence: manual's sequential loop against the log-space
    parallel scan the paper trains with (manual.cells.mingru.scan), from the same pre-activations, float32; the
    scan's h first checked against the loop's."""
    from array_api_compat import array_namespace

    from manual.cells import mingru, minlstm
    from manual.kernels import kernels

    cell = {"MINGRU": mingru, "MINLSTM": minlstm}[mode]
    T, B, I, H = CELL_SIZES[name]  # noqa: E741
    rng = np.random.default_rng(0)
    xproj = rng.normal(size=(T, B, (2 if mode == "MINGRU" else 3) * H)).astype(np.float32)
    h0 = rng.uniform(0.1, 1.0, (B, H)).astype(np.float32)
    if impl.endswith("torch"):
        xproj, h0 = torch.from_numpy(xproj), torch.from_numpy(h0)
    xp = array_namespace(xproj)
    k = kernels(xp, "tanh")
    loop = lambda: cell.forward(xp, k, None, xproj, h0, None, {}, None)[0]  # noqa: E731
    scan = lambda: cell.scan(xp, xproj, h0)  # noqa: E731
    assert np.allclose(np.asarray(scan()), np.asarray(loop()), rtol=1e-4, atol=1e-5)
    benchmark.group = f"{mode} forward: loop against scan {CELL_SIZES[name]} float32 cpu"
    benchmark.extra_info.update({"impl": impl, "T": T, "B": B, "D": I, "H": H, "dtype": "float32", "device": "cpu",
                                 "machine": MACHINE})
    benchmark.pedantic(loop if impl.startswith("loop") else scan, rounds=5, warmup_rounds=1)
