"""oracle.checker.cluster.run_ray: each case a Ray task that runs it as a local run would (run_isolated on that
one case), so that the results are a local run's, bit for bit, and a crash, a hang or a dead Ray worker fails
only its own case."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'bptt-reference[ray]')")

from contract.errors import BadValue  # noqa: E402
from manual.compiled import available  # noqa: E402
from oracle.cases import parse_case  # noqa: E402
from oracle.checker.candidate import CandidateError, Outcome, reference_to  # noqa: E402
from oracle.checker.cluster import run_ray, session  # noqa: E402
from oracle.checker.isolate import run_isolated  # noqa: E402
from oracle.checker.run import judge, prepare  # noqa: E402

pytestmark = pytest.mark.slow

BACKENDS = ("array-api", "numba") if available() else ("array-api",)  # manual's, which differ in the last bits
SEED = ["many-to-one/tanh/mse/T1-B1-D3-H4-O2/float64", "many-to-many/tanh/mse/T2-B3-D4-H5-O3/float32"]
MODULE = ["module/LSTM/L1/T5-B3-I3-H4/lengths-mixed/up-hn/float64",
          "module/GRU/L1/T5-B3-I3-H4/lengths-full/up-both/float64"]
BY_LENGTH = [f"many-to-one/tanh/mse/{s}/float64" for s in ("T1-B1-D3-H4-O2", "T2-B3-D4-H5-O3", "T17-B3-D4-H5-O3",
                                                            "T64-B8-D6-H16-O4")]

# Written by the fixture into a folder on the Ray workers' PYTHONPATH (tests/candidates is there too).
CANDIDATES = '''
"""Candidates of tests/unit/test_ray.py."""
import os
import signal
import time

import checker_attacks
import manual
import wrong_candidates


def by_length(params, x, target, **kw):
    """By the case's T: raises (T1), ends its process (T2), hangs (T17); right otherwise."""
    print(f"by_length: T={x.shape[0]}", flush=True)
    failing = {1: wrong_candidates.raises, 2: wrong_candidates.hard_exit, 17: checker_attacks.hangs}
    return failing.get(x.shape[0], manual.gradients)(params, x, target, **kw)


def hangs_noting_its_pid(params, x, target, **kw):
    with open(os.path.join(os.path.dirname(__file__), "hang.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)


def kills_its_ray_worker(params, x, target, **kw):
    """At T1: its pid to orphan.pid, SIGKILL to the Ray worker above its warden (only if it is one), and a hang
    (its warden may live on, or die with the Ray worker: either way it is an orphan). Right otherwise."""
    if x.shape[0] == 1:
        with open(os.path.join(os.path.dirname(__file__), "orphan.pid"), "w") as f:
            f.write(str(os.getpid()))
        with open(f"/proc/{os.getppid()}/stat") as f:
            ray_worker = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{ray_worker}/cmdline", "rb") as f:
            if not f.read().startswith(b"ray::"):  # a Ray worker's title (setproctitle): ray::run_case
                raise RuntimeError("not below a Ray worker")
        os.kill(ray_worker, signal.SIGKILL)
        time.sleep(3600)
    return manual.gradients(params, x, target, **kw)
'''


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """The candidates above, in a folder on this process's sys.path (so on a local session's workers' too)."""
    where = tmp_path_factory.mktemp("ray_candidates")
    (where / "ray_candidates.py").write_text(CANDIDATES)
    sys.path.insert(0, str(where))
    yield where
    sys.path.remove(str(where))


@pytest.fixture(scope="module")
def cluster(candidates):
    """One local Ray instance (2 CPUs) for the module; its workers import what this process can."""
    path = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def outcomes(runner, candidate, names: list[str], **kw) -> dict[int, list[Outcome]]:
    """Case index → the Outcomes ``runner`` (run_ray or run_isolated) gave, prepared as ``bptt check`` does."""
    cases, got = [parse_case(n) for n in names], {}

    def task(i: int) -> tuple:
        p = prepare(cases[i], cases[i].inputs())
        return p.case, p.inputs, p.expect

    runner(reference_to(candidate), len(cases), task, lambda i, o: got.setdefault(i, []).append(o), **kw)
    return got


def assert_bitwise(a, b, where: str) -> None:
    """The same array (or torch bfloat16 tensor), bit for bit; a withheld stand-in (every stride 0) by its
    shape and dtype alone."""
    assert type(a) is type(b), where
    if hasattr(a, "detach"):
        assert a.dtype == b.dtype, where
        a, b = a.float().numpy(), b.float().numpy()
    assert (a.dtype, a.shape, a.strides, a.flags.writeable) == (b.dtype, b.shape, b.strides, b.flags.writeable), where
    if a.size <= 1 or any(a.strides):
        assert a.tobytes() == b.tobytes(), where


def assert_same(ours: dict[int, list[Outcome]], local: dict[int, list[Outcome]]) -> None:
    assert sorted(ours) == sorted(local)
    for i in local:
        assert len(ours[i]) == len(local[i]) == 1
        x, y = ours[i][0], local[i][0]
        assert (x.error, x.notes, x.skipped, len(x.grads)) == (y.error, y.notes, y.skipped, len(y.grads)), i
        for gx, gy in zip(x.grads, y.grads, strict=True):
            assert gx.keys() == gy.keys()
            for k in gx:
                assert_bitwise(gx[k], gy[k], f"case {i}: {k}")


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(BadValue, match="--ray") as e:
        run_ray(("spec", "manual:gradients"), 1, lambda i: (), lambda i, o: None)
    assert "not installed" in e.value.why and e.value.remedy.startswith("pip install 'bptt-reference[ray]'")


def test_an_address_without_a_cluster_is_refused():
    assert not ray.is_initialized()
    with pytest.raises(BadValue, match="no Ray cluster could be reached there") as e:
        run_ray(("spec", "manual:gradients"), 1, lambda i: (), lambda i, o: None, address="nonsense://x")
    assert "ray start --head" in e.value.remedy and not ray.is_initialized()


def test_a_local_session(candidates):
    """Before the module's instance, one that a session starts and ends, run_ray using it: a candidate that cannot
    be loaded is the driver's CandidateError (a local run's), the instance left up; a case whose Ray worker is
    killed under it fails alone, and its candidate, orphaned and hanging, is ended with the session."""
    with pytest.raises(CandidateError) as local:
        outcomes(run_isolated, "no_such_module_xyz:f", SEED[:1])
    assert not ray.is_initialized()
    with session("local", jobs=2):
        with pytest.raises(CandidateError) as ours:
            outcomes(run_ray, "no_such_module_xyz:f", SEED[:1])
        assert ray.is_initialized()
        got = outcomes(run_ray, "ray_candidates:kills_its_ray_worker", BY_LENGTH[:2])
        orphan = int((candidates / "orphan.pid").read_text())
        assert os.path.exists(f"/proc/{orphan}")
    assert not ray.is_initialized() and not os.path.exists(f"/proc/{orphan}")
    assert str(ours.value) == str(local.value) and "python -c 'import no_such_module_xyz'" in str(ours.value)
    assert [len(got[0]), len(got[1])] == [1, 1]
    assert got[0][0].error.startswith("the Ray task that ran this case failed (WorkerCrashedError")
    assert got[1][0].error == "" and np.isfinite(got[1][0].grads[0]["Whh"]).all()


def ended(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie, dead), waiting up to ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_stops_the_cases_in_flight_and_exits_143(candidates):
    """As a local run does: SIGTERM to the checker (Ray's own handler would end it at once, status 1, leaving
    the case's worker process to run on) stops the case's worker process, then exits with status 143."""
    code = "\n".join([
        "import sys", f"sys.path[:0] = {sys.path!r}",
        "from oracle.cases import parse_case", "from oracle.checker.cluster import run_ray",
        "from oracle.checker.run import prepare",
        f"p = prepare(parse_case({SEED[0]!r}), parse_case({SEED[0]!r}).inputs())",
        "run_ray(('spec', 'ray_candidates:hangs_noting_its_pid'), 1, lambda i: (p.case, p.inputs, p.expect), "
        "lambda i, o: print(o.error), jobs=1)"])
    note = candidates / "hang.pid"
    checker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 90
        while not note.exists() and checker.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        assert note.exists(), checker.communicate(timeout=60)
        checker.send_signal(signal.SIGTERM)
        checker.communicate(timeout=60)
    finally:
        checker.kill()
    assert checker.returncode == 143 and ended(int(note.read_text()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_are_a_local_runs_bit_for_bit(cluster, monkeypatch, backend):
    """manual.gradients on seed cases, on each backend (the two differ in the last bits: the driver's BPTT_BACKEND
    goes with each task, as a local worker inherits it): what run_isolated gives, array for array."""
    monkeypatch.setenv("BPTT_BACKEND", backend)
    assert_same(outcomes(run_ray, "manual:gradients", SEED), outcomes(run_isolated, "manual:gradients", SEED))
    assert ray.is_initialized()  # an instance it did not start is left running


@pytest.mark.parametrize("candidate, names", [
    ("manual:module_gradients", MODULE),
    ("wrong_candidates:cast_bfloat16", SEED[:1]),  # torch bfloat16 tensors again in the driver
    ("checker_attacks:broadcast_view", SEED[:1]),  # 2·10⁹ elements: a stand-in of its shape alone, never copied
])
def test_module_cases_bfloat16_and_stand_ins_are_a_local_runs(cluster, candidate, names):
    assert_same(outcomes(run_ray, candidate, names), outcomes(run_isolated, candidate, names))


def test_a_crash_or_a_hang_fails_only_its_own_case(cluster):
    printed = io.StringIO()
    got = outcomes(run_ray, "ray_candidates:by_length", BY_LENGTH, timeout=3.0, stream=printed)
    errors = {i: [o.error for o in got[i]] for i in got}
    assert "the candidate raised RuntimeError: my kernel is broken" in errors[0][0]
    assert "exited with status 0" in errors[1][0] and "Ray" not in errors[1][0]
    assert errors[2][0].startswith("timed out: no result after 3 s")
    assert errors[3] == [""] and judge(prepare(parse_case(BY_LENGTH[3]), parse_case(BY_LENGTH[3]).inputs()),
                                       got[3][0]).ok
    assert "bptt: worker process" in printed.getvalue() and "by_length: T=64" in printed.getvalue()


def test_a_gpu_share_the_cluster_lacks_is_refused(cluster):
    """Ray would wait for it without end; the module's instance has no GPU."""
    with pytest.raises(BadValue, match="asks for 1 GPU"):
        outcomes(run_ray, "manual:gradients", SEED[:1], num_gpus=1)


def test_fuzz_over_ray_finds_and_shrinks_as_locally(cluster):
    from oracle.fuzzing import fuzz

    local = fuzz("module_mutants:hn_at_T", cell="RNN_TANH", isolate=False, database=False, seed=0, max_examples=30)
    remote = fuzz("module_mutants:hn_at_T", cell="RNN_TANH", ray="local", database=False, seed=0, max_examples=30)
    assert remote.failure is not None and remote.failure.case.name == local.failure.case.name, remote.summary()


def test_check_over_ray_through_the_cli(cluster, capsys):
    from oracle.cli import main

    code = main(["check", "--candidate", "manual:module_gradients", "--ray", "-k", "GRU and L1 and T2 and float64"])
    assert code == 0 and "6 cases: 6 passed, 0 failed" in capsys.readouterr().out
