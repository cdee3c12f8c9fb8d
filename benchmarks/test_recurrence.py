"""The gated delta rule's hand-derived BPTT against autograd through the unrolled steps, one run, side by side:
(B, T, H, K, V) = (2, 256, 4, 64, 64), and (1, 2048, 4, 64, 64) packed into 8 sequences; time and peak memory.

    python -m pytest benchmarks/test_recurrence.py --benchmark-json=rec.json

Each benchmark first checks, outside the timed part, that the gradients it times are right: manual's against
autograd's in float64 on the same inputs, judged by the oracle's bound.
"""

import numpy as np
import pytest
import torch
from impls import machine, peak_rss_bytes
from recurrence_impls import RECURRENCE_SIZES, make_recurrence

from oracle.cases.recurrence import time_major
from oracle.judge import compare, to_numpy

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
MACHINE = machine()


def check(impl: str, name: str, device: str) -> None:
    """manual's float64 gradients equal autograd's (time-major, as the oracle judges them); autograd is the
    reference and the library's kernel is timed, not judged."""
    if impl in ("autograd", "fla-chunk"):
        return
    got = make_recurrence(impl, name, "float64", device)[1]()
    want = make_recurrence("autograd", name, "float64", device)[1]()
    report = compare(time_major({k: to_numpy(v) for k, v in got.items()}),
                     time_major({k: to_numpy(v) for k, v in want.items()}), title=f"{impl} {name}")
    assert report.ok, str(report)


def run(benchmark, impl: str, name: str, dtype: str, device: str) -> None:
    check(impl, name, device)
    try:
        timed, _ = make_recurrence(impl, name, dtype, device)
    except ImportError as e:
        pytest.skip(f"{impl}: {e} (the public library's chunked kernels need fla-core with Triton, on CUDA)")
    (B, T, H, K, V), lengths = RECURRENCE_SIZES[name]
    benchmark.group = f"recurrence {name} {(B, T, H, K, V)} {dtype} {device}"
    benchmark.extra_info.update({"impl": impl, "B": B, "T": T, "H": H, "K": K, "V": V, "dtype": dtype,
                                 "device": device, "sequences": len(lengths) if lengths else B, "machine": MACHINE})
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(timed, rounds=5, warmup_rounds=1)
    if device == "cuda":
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated()
    elif benchmark.enabled:
        benchmark.extra_info["peak_bytes"] = peak_rss_bytes("recurrence", (impl, name), dtype)


@pytest.mark.parametrize("impl", ["manual-numpy", "manual-torch", "autograd"])
@pytest.mark.parametrize("name", list(RECURRENCE_SIZES))
def test_recurrence_cpu(benchmark, name, impl):
    run(benchmark, impl, name, "float32", "cpu")


@needs_cuda
@pytest.mark.parametrize("impl", ["manual-torch", "autograd", "fla-chunk"])
@pytest.mark.parametrize("name", list(RECURRENCE_SIZES))
def test_recurrence_cuda(benchmark, name, impl):
    torch.backends.cuda.matmul.allow_tf32 = False
    run(benchmark, impl, name, "float32", "cuda")


def test_the_problems_are_what_the_issue_names():
    assert RECURRENCE_SIZES["batch"] == ((2, 256, 4, 64, 64), None)
    (shape, lengths) = RECURRENCE_SIZES["packed"]
    assert shape == (1, 2048, 4, 64, 64) and len(lengths) == 8 and sum(lengths) == 2048
    assert np.isfinite(make_recurrence("manual-numpy", "batch")[1]()["g"]).all()
