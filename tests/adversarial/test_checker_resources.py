"""The checker under a candidate's resources: memory bounded by the case, no process outlives its worker, a worker
that dies between cases fails only its case, replies checked completely, each message saying what happened.

The attacks are in ``checker_attacks.py``. Runs that measure memory or wait on pipes run ``bptt`` in a
subprocess, as a CI step would: seconds each, so the whole file is in the slow set (the unit checks of the wire are
tests/unit/test_wire.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import export_golden

from oracle.checker.wire import (
    CALLS,
)

CASES = ["many-to-many/tanh/mse/T6-B2-D3-H4-O2/float64", "one-to-many/sigmoid/bce/T5-B2-D3-H4-O2/float64",
         "many-to-one/relu/cross_entropy/T7-B3-D3-H4-O3/float32"]
TESTS = Path(__file__).parents[1] / "candidates"  # the attacks, importable by name in a subprocess
# what `bptt check` reports of its own and its largest worker's peak resident memory (MiB), on stderr
PROBE = ("import resource, sys; from oracle.cli import main; code = main(sys.argv[1:]); r = resource.getrusage; "
         "print('PEAK', r(resource.RUSAGE_SELF).ru_maxrss // 1024, r(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "
         "file=sys.stderr); sys.exit(code)")
pytestmark = pytest.mark.slow
SLACK_MIB = 64  # peak memory allowed above a right candidate's run: the attacks below would take 1-16 GiB


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return export_golden(tmp_path_factory.mktemp("golden"), CASES)


def bptt(golden, candidate, *more, env=(), timeout=120):
    """``bptt check`` in a subprocess, output captured: (exit code, stdout, stderr, seconds, (checker, worker) MiB)."""
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", PROBE, "check", str(golden), "--candidate", candidate, *more],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(TESTS), **dict(env)})
    took = time.monotonic() - start
    peak = next((tuple(map(int, line.split()[1:])) for line in p.stderr.splitlines() if line.startswith("PEAK")),
                None)
    assert "Traceback" not in p.stdout + p.stderr, p.stdout + p.stderr
    return p.returncode, p.stdout, p.stderr, took, peak


@pytest.fixture(scope="module")
def right_peak(golden):
    code, out, err, _, peak = bptt(golden, "wrong_candidates:right", "--jobs", "1", "-k", "float64")
    assert code == 0, out + err
    return peak


# ---------------------------------------------------------------- 1. memory bounded by the case


def test_a_broadcast_view_fails_by_its_shape_within_the_memory_bound(golden, right_peak):
    code, out, err, _, peak = bptt(golden, "checker_attacks:broadcast_view", "--jobs", "1", "-k", "float64")
    assert code == 1 and "Wxh  FAIL  shape (2000000000,), expected (4, 3)" in out, out + err
    assert peak[0] <= right_peak[0] + SLACK_MIB and peak[1] <= right_peak[1] + SLACK_MIB, (peak, right_peak)


def test_a_forged_huge_frame_is_refused_before_it_is_read(golden, right_peak):
    code, out, err, _, peak = bptt(golden, "checker_attacks:forged_frame", "--jobs", "1", "-k", "float64")
    assert code == 1 and "a reply of 419430400 bytes announced, where this case's take at most" in out, out + err
    assert peak[0] <= right_peak[0] + SLACK_MIB, (peak, right_peak)


# ---------------------------------------------------------------- 2. no survivors

def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guarantee is Linux's (a child subreaper)")
@pytest.mark.parametrize("attack", ["setsid_daemon", "setpgid_child"])
def test_processes_the_candidate_starts_end_with_its_worker(attack, golden, tmp_path):
    """They sleep 30 s holding the worker's stdout and stderr: `bptt` under capture_output returns without them."""
    pids = tmp_path / "pids"
    pids.touch()
    code, out, err, took, _ = bptt(golden, f"checker_attacks:{attack}", "--jobs", "2",
                                   env={"BPTT_TEST_PIDS": str(pids)})
    assert code == 0 and f"{len(CASES)} passed" in out, out + err
    assert took < 20, f"capture_output waited {took:.1f} s"
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) >= len(CASES) and all(gone(p) for p in started), started


# ---------------------------------------------------------------- 3. a worker that dies between cases

@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_worker_that_dies_between_cases_fails_its_last_case_and_the_run_goes_on(jobs, golden):
    code, out, err, _, _ = bptt(golden, "checker_attacks:closes_task_pipe", "--jobs", jobs)
    assert code == 1 and "could not be loaded" not in out + err, out + err
    assert out.count("the worker process died after answering this case") == len(CASES), out
    assert "the worker's task pipe is closed" in out and f"{len(CASES)} cases: 0 passed" in out, out


# ---------------------------------------------------------------- 4. replies checked completely

@pytest.mark.parametrize("attack, words", [
    ("forged_bfloat16_label", "bfloat16 names that are not float32 entries of their set"),
    ("forged_one_call", f"1 gradient sets where {CALLS} were asked"),
])
def test_a_forged_reply_fails_its_case(attack, words, golden):
    code, out, err, _, _ = bptt(golden, f"checker_attacks:{attack}", "--jobs", "1", "-k", "many-to-many")
    assert code == 1 and "malformed reply" in out and words in out, out + err


# ---------------------------------------------------------------- 5. each message says what happened

@pytest.mark.parametrize("attack, words", [
    ("long_double", "Wxh: dtype float128 is not supported"),
    ("complex_long_double", "Wxh: dtype complex256 is not supported"),
    ("nine_dims", "Wxh  FAIL  shape (4, 3, 1, 1, 1, 1, 1, 1, 1), expected (4, 3)"),
    ("numpy_str_keys", "key(s) of type numpy.str_ ignored ('Wxh', 'Whh', 'bh', …): use str keys"),
    ("closes_reply_pipe", "the worker closed its reply pipe"),
])
def test_what_cannot_cross_is_named(attack, words, golden):
    if attack.endswith("long_double") and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("long double is float64 on this platform")
    code, out, err, _, _ = bptt(golden, f"checker_attacks:{attack}", "--jobs", "2", "--timeout", "10")
    assert code == 1 and words in out and "malformed" not in out, out + err


def test_a_candidate_may_use_multiprocessing(golden):
    code, out, err, _, _ = bptt(golden, "checker_attacks:uses_a_process_pool", "--jobs", "2")
    assert code == 0 and f"{len(CASES)} passed" in out, out + err


def test_a_script_without_the_main_guard_is_told_so(golden, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text("import oracle, wrong_candidates\n"
                      f"print(oracle.check(wrong_candidates.right, golden={str(golden)!r}, jobs=1))\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert p.returncode == 1 and 'not under `if __name__ == "__main__":`' in p.stderr, p.stdout + p.stderr
    assert "isolate=False" in p.stderr and p.stderr.count("Traceback") == 1, p.stderr


# ---------------------------------------------------------------- found in review

def test_a_worker_killed_by_sigkill_is_said_so(golden):
    """The kernel's out-of-memory killer sends SIGKILL: the report says so, and the warden writes no traceback."""
    code, out, err, _, _ = bptt(golden, "checker_attacks:self_kill", "--jobs", "1", "-k", "float64")
    assert code == 1 and out.count("died of SIGKILL: killed from outside (out of memory?)") == 2, out + err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guarantee is Linux's (a child subreaper)")
def test_a_candidate_that_kills_its_warden_leaves_nothing_behind(golden, tmp_path):
    """Its daemon is re-parented to the checker (a subreaper while it runs workers), which ends it."""
    pids = tmp_path / "pids"
    pids.touch()
    code, out, err, took, _ = bptt(golden, "checker_attacks:kill_warden", "--jobs", "1", "-k", "float64",
                                   env={"BPTT_TEST_PIDS": str(pids)})
    assert code == 1 and "SIGKILL" in out and took < 20, (took, out + err)
    started = [int(p) for p in pids.read_text().split()]
    assert started and all(gone(p) for p in started), started


def test_what_a_worker_writes_is_kept_bounded_and_shown_only_when_asked(golden, tmp_path):
    code, out, err, _, _ = bptt(golden, "checker_attacks:stderr_flood", "--jobs", "1", "-k", "float64",
                                env={"BPTT_FLOOD_MIB": "1", "TMPDIR": str(tmp_path)})
    assert code == 0 and "worker process" not in err, "a passing run does not show what its workers printed"
    code, out, err, _, _ = bptt(golden, "checker_attacks:stderr_flood", "--jobs", "1", "-k", "float64", "-v",
                                env={"BPTT_FLOOD_MIB": "64", "TMPDIR": str(tmp_path)})
    assert code == 0 and "bytes not kept" in err and len(err) < 2**20, (len(err), err[-300:])
    assert not list(tmp_path.glob("bptt-worker-*.log")), "a worker's log was left behind"


@pytest.fixture(scope="module")
def onnx_golden(tmp_path_factory):
    return export_golden(tmp_path_factory.mktemp("onnx"), ["module/GRU/L1/T5-B3-I3-H4/lengths-full/up-both/float64"])


def test_a_wide_view_in_onnx_layout_is_refused_by_its_shape(onnx_golden):
    code, out, err, _, peak = bptt(onnx_golden, "checker_attacks:onnx_wide_W", "--jobs", "1", "--layout", "onnx")
    assert code == 1 and "W_l0 has shape (1, 12, 100000000); ONNX's layout needs (1, 12, 3)" in out, out + err
    right = bptt(onnx_golden, "manual:module_gradients", "--jobs", "1")
    assert right[0] == 0 and peak[0] <= right[4][0] + SLACK_MIB, (peak, right[4])


def test_a_worker_that_dies_before_its_first_case_ends_the_run(golden, tmp_path):
    """A candidate whose import closes the worker's task pipe: each case fails once, the run ends (no endless
    respawning)."""
    (tmp_path / "closes_at_import.py").write_text(
        "import gc\nfrom multiprocessing.connection import Connection\nfrom wrong_candidates import right\n"
        "for c in gc.get_objects():\n"
        "    if isinstance(c, Connection) and not c.closed and c.readable:\n        c.close()\n")
    code, out, err, took, _ = bptt(golden, "closes_at_import:right", "--jobs", "1",
                                   env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{TESTS}"}, timeout=60)
    assert code == 1 and f"{len(CASES)} cases: 0 passed, {len(CASES)} failed" in out, out + err


def test_sigterm_to_the_checker_stops_every_worker_at_once(golden, tmp_path):
    pids = tmp_path / "pids"
    pids.touch()
    p = subprocess.Popen([sys.executable, "-m", "oracle.cli", "check", str(golden), "--candidate",
                          "checker_attacks:hangs", "--jobs", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(TESTS), "TMPDIR": str(tmp_path)}, text=True)
    time.sleep(4)  # the workers load and start their cases
    start = time.monotonic()
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert time.monotonic() - start < 12 and p.returncode == 143 and "Traceback" not in err, err
    assert not list(tmp_path.glob("bptt-worker-*.log"))


