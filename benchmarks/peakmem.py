"""Peak resident memory of one gradient call, measured in this fresh process.

    python benchmarks/peakmem.py IMPL T B D H DTYPE    → prints bytes
    python benchmarks/peakmem.py recurrence IMPL NAME DTYPE   (benchmarks/recurrence_impls.py's problems)

The kernel's high-water mark (VmHWM) is reset just before the call
(``/proc/self/clear_refs``), so the figure is the call's own peak above what
the process held before it: inputs, imports and thread pools excluded.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from impls import make  # noqa: E402


def status(key: str) -> int:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
    return int(line.split()[1]) * 1024


if __name__ == "__main__":
    if sys.argv[1] == "recurrence":  # python benchmarks/peakmem.py recurrence IMPL NAME DTYPE
        from recurrence_impls import make_recurrence

        timed, _ = make_recurrence(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        impl, T, B, D, H, dtype = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
        if impl == "manual-numba":  # load the compiled loops first (numba's cache): code, not the call's memory
            make(impl, (2, 1, 2, 2), dtype, "cpu")[0]()
        timed, _ = make(impl, (T, B, D, H), dtype, "cpu")
    before = status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    timed()
    print(status("VmHWM:") - before)
