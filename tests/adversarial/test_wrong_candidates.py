"""The checker cannot be fooled and cannot be ended: every wrong candidate FAILs with its reason, exit 1.

Candidates run isolated, as `bptt check` runs them (worker processes), on
golden cases in float64 and float32; the right candidate passes them all.
"""

import os
import re
import sys
import time
from functools import partial

import numpy as np
import pytest
import wrong_candidates
from helpers import SLOW, export_golden
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases.seed import Case
from oracle.checker.candidate import CandidateError
from oracle.checker.run import NothingToCheckError, check, prepare
from oracle.cli import main
from oracle.judge import MAX_TOL, bounds, compare, sizes, tolerance
from oracle.policy import LOW_CAP

CASES = ["many-to-many/tanh/mse/T6-B2-D3-H4-O2/float64", "one-to-many/sigmoid/bce/T5-B2-D3-H4-O2/float64",
         "many-to-one/relu/cross_entropy/T7-B3-D3-H4-O3/float32"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return export_golden(tmp_path_factory.mktemp("golden"), CASES)


def bptt_check(golden, candidate, capsys, *more):
    start = time.monotonic()
    code = main(["check", str(golden), "--candidate", candidate, "--jobs", "2", *more])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err, out.out + out.err
    return code, out.out, time.monotonic() - start


def test_the_right_candidate_passes_in_every_dtype(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:right", capsys)
    assert code == 0 and f"{len(CASES)} cases: {len(CASES)} passed, 0 failed" in out, out


FAST = ("raises", "sign_flip_Whh", "segfaults")  # one wrong number, one exception, one crash: the rest are slow


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else SLOW) for n in wrong_candidates.WRONG])
def test_wrong_candidate_fails_with_its_reason(name, golden, capsys):
    _, words = wrong_candidates.WRONG[name]
    code, out, _ = bptt_check(golden, f"wrong_candidates:{name}", capsys)
    assert code == 1, out
    assert f"{len(CASES)} cases: 0 passed, {len(CASES)} failed" in out, out
    assert words in out, out


@pytest.mark.slow
def test_float32_computation_fails_a_float64_case(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:float32_computation", capsys, "-k", "float64")
    assert code == 1 and "2 cases: 0 passed, 2 failed" in out, out


@pytest.mark.slow
def test_a_hang_fails_its_case_within_the_timeout(golden, capsys):
    code, out, took = bptt_check(golden, "wrong_candidates:hangs", capsys, "--timeout", "1.5")
    assert code == 1 and "timed out: no result after 1.5 s" in out, out
    assert took < 30, f"{took:.1f} s for three 1.5 s timeouts on two workers"


@pytest.mark.slow
def test_isolation_from_python_and_in_process(golden):
    assert check(wrong_candidates.right, golden=golden).ok
    assert check("wrong_candidates:right", golden=golden, isolate=False).ok
    result = check(wrong_candidates.WRONG["segfaults"][0], golden=golden, jobs=1)
    assert not result.ok and all("SIGSEGV" in r.error for r in result.results)
    result = check(wrong_candidates.WRONG["zeroes_why_in_place"][0], golden=golden, isolate=False)
    assert all('params["Why"] was modified in place' in r.error for r in result.results)


@pytest.mark.slow
def test_big_endian_results_pass_isolated_and_in_process(golden):
    assert check("wrong_candidates:big_endian", golden=golden, jobs=1).ok
    assert check(wrong_candidates.big_endian, golden=golden, isolate=False).ok


def test_unpicklable_candidate_is_refused_with_a_remedy(golden):
    with pytest.raises(CandidateError, match="isolate=False"):
        check(lambda *a, **k: {}, golden=golden)
    assert not check(lambda *a, **k: {}, golden=golden, isolate=False).ok


@pytest.mark.slow
@pytest.mark.parametrize("source, words", [
    ("def gradients(:\n", "SyntaxError"),
    ("raise ImportError('no libmykernel.so')\ndef gradients(*a, **k): pass\n", "no libmykernel.so"),
    ("import os\nos.abort()\n", "SIGABRT"),
    ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    ("gradients = 42\n", "not callable"),
    ("x = 1\n", "has no attribute 'gradients'"),
])
def test_a_candidate_that_cannot_be_loaded_is_a_usage_error(source, words, golden, tmp_path, capsys, monkeypatch):
    name = f"cand_{abs(hash(source)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)  # `bptt check` imports the candidate from the folder it runs in
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["check", str(golden), "--candidate", f"{name}:gradients"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Remedy" in err and "Traceback" not in err, err
    remedy = err.split("Remedy:", 1)[1]
    assert name in remedy and "MODULE'" not in remedy, err  # the candidate's own module, not a placeholder
    if "has no attribute" in words:
        assert "check FUNCTION in MODULE:FUNCTION" in remedy and f"print(dir({name}))" in remedy, err


def test_nothing_selected_is_exit_2(golden, tmp_path, capsys):
    assert main(["check", str(golden), "--candidate", "wrong_candidates:right", "-k", "nomatch"]) == 2
    assert "no case selected" in capsys.readouterr().err
    assert main(["check", str(golden), "--grads", str(tmp_path), "-k", "nomatch"]) == 2
    assert main(["check", str(golden), "--grads", str(tmp_path / "no/such/dir")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(NothingToCheckError, match="not a folder"):
        check(wrong_candidates.right, golden=tmp_path / "no/such/dir")
    with pytest.raises(NothingToCheckError, match="no case selected"):
        check(wrong_candidates.right, cases="nomatch")


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", [
    (["--timeout", "0"], "positive number"), (["--timeout", "nan"], "positive number"),
    (["--jobs", "0"], "positive integer"), (["--jobs", "two"], "positive integer"),
])
def test_bad_timeout_or_jobs_is_exit_2(argv, words, golden, capsys):
    assert main(["check", str(golden), "--candidate", "wrong_candidates:right", *argv]) == 2
    assert words in capsys.readouterr().err


# ---------------------------------------------------------------- the bound is the case's

@pytest.fixture(scope="module")
def prepared():
    return {name: prepare(Case.parse(name), Case.parse(name).inputs()) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_each_tensor_scaled_by_one_plus_ten_bounds_fails(name, prepared):
    p = prepared[name]
    right = wrong_candidates._right_np(p.inputs["params"], p.inputs["x"], p.inputs["target"], h0=p.inputs["h0"],
                                       **p.case.kwargs)
    base = p.want.compare(right, dtype=p.case.dtype, ref=p.ref)
    assert base.ok, str(base)
    for t in base.tensors:
        got = dict(right, **{t.name: right[t.name] * (1 + 10 * t.tol)})
        report = p.want.compare(got, dtype=p.case.dtype, ref=p.ref)
        assert not report[t.name].ok, f"{name}: {t.name} scaled by 1 + 10·{t.tol:.1e} passed:\n{report}"


@pytest.mark.parametrize("dtype, cap", [("float32", MAX_TOL), ("float64", MAX_TOL), ("bfloat16", LOW_CAP),
                                        ("float16", LOW_CAP)])
def test_bound_never_exceeds_its_cap_whatever_the_allowances(dtype, cap):
    want = np.array([1.0, -2.0, 0.5])
    huge = {"amp": np.full(3, 1e9), "sens": np.full(3, 1e30), "ref": want * 3}
    allowed, scale, _ = bounds("bh", want, dtype=dtype, tol=1.0, **huge)
    assert np.all(allowed <= cap * scale)
    assert not compare({"bh": want * (1 + 2 * cap)}, {"bh": want}, dtype=dtype, ref={"bh": want * 3}).ok


def test_dtype_of_the_case_not_of_the_candidate():
    want = {"Wxh": np.linspace(-1, 1, 12).reshape(4, 3)}
    low = {"Wxh": want["Wxh"].astype(np.float16)}
    assert not compare(low, want).ok  # a float64 case: float16 rounding is far outside its bound
    assert compare(low, want, dtype="float16").ok
    with pytest.raises(ValueError, match="dtype must be one of"):
        compare(low, want, dtype="int8")


@st.composite
def case_and_move(draw):
    dims = {k: draw(st.integers(1, 4)) for k in ("B", "D", "H", "O")}
    case = Case(draw(st.sampled_from(TOPOLOGIES)), draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(LOSSES)),
                T=draw(st.integers(1, 6)), **dims, dtype=draw(st.sampled_from(["float64", "float32"])))
    return case, draw(st.integers(0, 10**6)), draw(st.sampled_from([-1.0, 1.0]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_and_move())
def test_moving_any_one_element_by_ten_bounds_is_caught(drawn):
    case, pick, sign = drawn
    p = prepare(case, case.inputs())
    want = p.want.grads
    name = sorted(want)[pick % len(want)]
    idx = np.unravel_index(pick % want[name].size, want[name].shape)
    allowed, _, _ = bounds(name, want[name], dtype=case.dtype, tol=tolerance(case.dtype, *sizes(want)),
                           ref=None if p.ref is None else p.ref[name],
                           future=want["h"] if name == "h0" else None, sens=p.want.sens[name], amp=p.want.amp[name])
    got = {k: v.copy() for k, v in want.items()}
    got[name][idx] += sign * 10 * allowed[idx]
    report = p.want.compare(got, dtype=case.dtype, ref=p.ref)
    assert not report[name].ok and report[name].mismatched == 1, f"{case.name} {name}{idx}:\n{report}"
    assert report.ok is False


def test_reference_side_comes_before_the_candidate(golden):
    """A candidate that zeroes Why in place can no longer inflate autograd's float32 allowance."""
    result = check(wrong_candidates.WRONG["zeroes_why_in_place"][0], golden=golden, cases="float32", isolate=False)
    assert not result.ok and 'params["Why"] was modified in place' in result.results[0].error


def test_stateful_candidate_fails_even_alone(golden):
    wrong_candidates._calls["n"] = 0
    result = check(wrong_candidates.stateful, golden=golden, cases=CASES[0][:30], isolate=False)
    assert not result.ok and "call 2 of 2" in str(result)


def test_keyboard_interrupt_in_process_is_not_swallowed(golden):
    with pytest.raises(KeyboardInterrupt):
        check(wrong_candidates.keyboard_interrupt, golden=golden, isolate=False)


def test_jobs_default_to_the_cores():
    from oracle.checker.isolate import default_jobs
    assert default_jobs() == len(os.sched_getaffinity(0))


def test_report_names_a_missing_tensor():
    report = compare({"Wxh": np.zeros((2, 2))}, {"Wxh": np.zeros((2, 2))})
    with pytest.raises(KeyError, match=re.escape("no tensor 'nope' in this report; it holds Wxh")):
        report["nope"]


def test_partial_candidates_are_picklable():
    import pickle
    assert pickle.loads(pickle.dumps(partial(wrong_candidates.zeros, dtype="float16"))).keywords == {"dtype": "float16"}


# ---------------------------------------------------------------- attacks on the checker itself

@pytest.mark.slow
def test_str_subclass_keys_are_not_judged_and_never_cross(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:str_subclass_keys", capsys)
    assert code == 1 and "Wxh  FAIL  missing" in out, out


@pytest.mark.slow
def test_a_forged_reply_fails_the_case(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:forges_a_reply", capsys, "-k", "float64")
    assert code == 1 and "malformed reply" in out, out


@pytest.mark.slow
def test_half_a_reply_cannot_hang_the_checker(golden, capsys):
    code, out, took = bptt_check(golden, "wrong_candidates:half_a_reply", capsys, "-k", "float32", "--timeout", "2")
    assert code == 1 and "timed out" in out and took < 30, out


@pytest.mark.slow
def test_a_forking_right_candidate_passes(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:forks", capsys)
    assert code == 0, out


@pytest.mark.slow
def test_processes_the_candidate_started_are_ended(golden, capsys, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("BPTT_TEST_PIDS", str(pids))
    code, out, took = bptt_check(golden, "wrong_candidates:leaves_a_child", capsys)
    assert code == 0 and took < 30, out
    for pid in map(int, pids.read_text().split()):
        assert not running_after(pid, seconds=5), f"process {pid} started by the candidate outlived the check"


def running_after(pid: int, seconds: float) -> bool:
    """Whether ``pid`` still runs (not a zombie) after up to ``seconds`` of SIGKILL delivery."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
def test_unreadable_results_and_extra_entries(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:meta_tensor", capsys)
    assert code == 1 and "returned something unreadable" in out, out
    code, out, _ = bptt_check(golden, "wrong_candidates:extras_and_nones", capsys)
    assert code == 0, out


@pytest.mark.slow
def test_a_worker_dying_between_cases_is_no_traceback(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:hard_exit", capsys, "--jobs", "1")
    assert code == 1 and "exited with status 0" in out


@pytest.mark.slow
def test_huge_timeout_is_accepted(golden, capsys):
    code, out, _ = bptt_check(golden, "wrong_candidates:right", capsys, "--timeout", "3000000")
    assert code == 0, out


def test_sys_exit_at_import_in_process_is_exit_2(golden, tmp_path, capsys, monkeypatch):
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", str(golden), "--candidate", "exits_at_import:f", "--in-process"]) == 2
    assert "SystemExit: 7" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, error, words", [
    ({"cases": 5}, TypeError, ["cases", "int", "Remedy"]),
    ({"cases": ["many-to-one"]}, TypeError, ["cases must hold cases", "str", "Remedy"]),
    ({"cases": b"many"}, TypeError, ["cases", "bytes"]),
    ({"golden": 5}, TypeError, ["golden", "folder name", "int"]),
    ({"golden": "g", "cases": [Case.parse(CASES[0])]}, ValueError, ["golden=", "Remedy"]),
    ({"timeout": "5"}, ValueError, ["timeout", "'5'"]),
    ({"timeout": float("inf")}, ValueError, ["timeout", "finite", "inf"]),
    ({"timeout": True}, ValueError, ["timeout", "True"]),
    ({"jobs": True}, ValueError, ["jobs", "True"]),
])
def test_check_arguments_are_named(kwargs, error, words):
    with pytest.raises(error) as info:
        check(wrong_candidates.right, **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_check_reads_a_generator_of_cases_once():
    from oracle.cases.seed import all_cases
    result = check(wrong_candidates.right, (c for c in all_cases()[:2]), isolate=False, progress=False)
    assert len(result.results) == 2 and result.ok
