"""Summarise a benchmark run: medians, speed-ups, GFLOP/s against the measured matmul peak, peak memory, plots.

    python benchmarks/summarize.py                      # runs the suite, then summarises
    python benchmarks/summarize.py --json bench.json    # summarises a saved --benchmark-json
    options: --plot PATH (default bench.png), --markdown (tables for the README)

Speed-up is the other implementation's median divided by manual's (above 1:
manual is faster). GFLOP/s counts forward + backward (impls.flops); "% peak"
is against the square matrix product of the same library, dtype and device
measured in the same run. "over floor" is manual's median over the median of
its own matrix products alone (impls.floor: same shapes, same count, same
library). The vanishing groups end with each manual's time there over its
time on the same size when the gradient does not vanish.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a clone
from contract.cells import CELLS  # noqa: E402

NN = list(dict.fromkeys(f"nn.{c.torch_module}" for c in CELLS.values() if c.torch_module))  # torch's modules
ORDER = ["manual-numpy", "manual-numba", "manual-torch", "autograd", *NN, "fla-chunk", "floor-numpy", "floor-torch",
         "loop-numpy", "scan-numpy", "loop-torch", "scan-torch"]
FLOOR = {"manual-numpy": "floor-numpy", "manual-numba": "floor-numpy", "manual-torch": "floor-torch"}


def load(path: str) -> list[dict]:
    data = json.loads(Path(path).read_text())
    return data["benchmarks"], data.get("machine_info", {})


def lib_of(impl: str) -> str:
    return "numpy" if impl in ("manual-numpy", "manual-numba", "floor-numpy") else "torch"


def _speedup(impls: dict, impl: str, other: str) -> str:
    """other's median / impl's median, for manual rows."""
    if not impl.startswith("manual") or other not in impls:
        return ""
    return f"{impls[other][0] / impls[impl][0]:.2f}×"


def summarize(benchmarks: list[dict], markdown: bool = False) -> str:
    peaks, loops = {}, {}  # (lib, dtype, device) → GFLOP/s of the square and the recurrence product
    groups = defaultdict(dict)
    machine = {}
    for b in benchmarks:
        e, med = b["extra_info"], b["stats"]["median"]
        machine = e.get("machine", machine)
        if e["impl"].startswith("matmul-"):
            key = (e["impl"][7:], e["dtype"], e["device"])
            (peaks if e.get("shape", "square") == "square" else loops)[key] = e["flops"] / med / 1e9
        else:
            groups[b["group"]][e["impl"]] = (med, e)
    out = [f"Machine: {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)"
           + (f", GPU {machine['gpu']}" if "gpu" in machine else "")
           + f"; torch {machine.get('torch', '?')}, numpy {machine.get('numpy', '?')} ({machine.get('blas', '?')})",
           "Matmul peak (GFLOP/s): " + ", ".join(f"{lib} {dt} {dev} {g:.0f}" for (lib, dt, dev), g in
                                                 sorted(peaks.items())),
           "The wide size's per-step product (16×1024)·(1024×1024) (GFLOP/s): "
           + ", ".join(f"{lib} {dt} {dev} {g:.0f}" for (lib, dt, dev), g in sorted(loops.items()))]
    sep = " | " if markdown else "  "
    head = ["implementation", "median ms", "vs autograd", "vs nn module", "over floor", "GFLOP/s", "% peak",
            "peak MiB", "subnormal ops"]
    for group, impls in groups.items():
        out += ["", f"{'### ' if markdown else ''}{group}"]
        rows = [head]
        if markdown:
            rows.append(["---"] * len(head))
        module = next((m for m in NN if m in impls), "nn.RNN")
        for impl in [i for i in ORDER if i in impls]:
            med, e = impls[impl]
            gf = e["flops"] / med / 1e9 if "flops" in e else None
            peak = peaks.get((lib_of(impl), e["dtype"], e["device"]))
            mem = e.get("peak_bytes")
            fl = impls.get(FLOOR.get(impl, ""))
            sub = e.get("subnormal_operands")
            rows.append([impl, f"{med * 1e3:.3f}", _speedup(impls, impl, "autograd"),
                         _speedup(impls, impl, module), f"{med / fl[0]:.2f}×" if fl else "",
                         f"{gf:.1f}" if gf else "", f"{100 * gf / peak:.0f}%" if peak and gf else "",
                         f"{mem / 2**20:.1f}" if mem else "", f"{sub:.2e}" if sub is not None else ""])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            line = sep.join(c.ljust(w) for c, w in zip(r, widths, strict=True))
            out.append(f"| {line} |" if markdown else line)
    out += _vanishing(groups)
    return "\n".join(out)


def _vanishing(groups: dict) -> list[str]:
    """Each manual's time on the vanishing problem over its time on the same size not vanishing (goal ≤ 1.25)."""
    lines = []
    for group, impls in groups.items():
        if not group.startswith("vanishing "):
            continue
        name = group.split()[1]
        base = next((g for g in groups if g.startswith(f"not-vanishing {name} ")), None)
        for impl in [i for i in ORDER if i.startswith("manual") and i in impls]:
            if base and impl in groups[base]:
                ratio = impls[impl][0] / groups[base][impl][0]
                rnn = impls.get("nn.RNN")
                vs = f"; nn.RNN's time over its: {rnn[0] / impls[impl][0]:.2f}×" if rnn else ""
                lines.append(f"vanishing {name}: {impl} takes {ratio:.2f}× its not-vanishing time{vs}")
    return ["", *lines] if lines else []


def plot(benchmarks: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, var in ((axes[0], "sweep-T", "T"), (axes[1], "sweep-H", "H")):
        series = defaultdict(list)
        for b in benchmarks:
            if b["group"].startswith(kind):
                e = b["extra_info"]
                series[e["impl"]].append((e[var], b["stats"]["median"] * 1e3))
        for impl in [i for i in ORDER if i in series]:
            pts = sorted(series[impl])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(var)
        ax.set_ylabel("forward + backward, median ms")
        fixed = "B=16, D=64, H=128" if var == "T" else "T=100, B=16, D=64"
        ax.set_title(f"time against {var} ({fixed}, float32, CPU)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="a saved --benchmark-json; without it the suite is run first")
    ap.add_argument("--plot", default="bench.png", help="PNG of time against T and H (needs matplotlib)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("pytest_args", nargs="*", help="extra arguments for pytest when running the suite")
    args = ap.parse_args(argv)
    path = args.json
    if path is None:
        path = str(Path(tempfile.mkdtemp()) / "bench.json")
        cmd = [sys.executable, "-m", "pytest", str(Path(__file__).parent), "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={path}", *args.pytest_args]
        if subprocess.run(cmd).returncode != 0:
            print("summarize: the benchmark run failed", file=sys.stderr)
            return 1
    benchmarks, _ = load(path)
    print(summarize(benchmarks, args.markdown))
    if not any(b["group"].startswith("sweep-") for b in benchmarks):
        print("\nplot skipped: this run has no sweep groups (they are CPU ones)", file=sys.stderr)
        return 0
    try:
        plot(benchmarks, args.plot)
        print(f"\nplot: {args.plot}")
    except ImportError:
        print("\nplot skipped: pip install matplotlib (the 'plot' extra)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
