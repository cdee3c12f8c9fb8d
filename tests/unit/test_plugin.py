"""oracle.assert_gradients and the pytest plugin, as a kernel project uses them (examples/kernel_project)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SLOW, export_golden

import manual
import oracle
from oracle.assertions import Selected
from oracle.cases import parse_case
from oracle.cases.select import in_shard

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kernel_project"
LSTM = "module/LSTM/L1/T5-B3-I3-H4/lengths-full/up-both/float64"


def test_assert_gradients_returns_the_report_for_a_name_a_case_and_a_golden_file(tmp_path):
    export_golden(tmp_path, [LSTM])
    path = tmp_path / f"{parse_case(LSTM).file_stem}.safetensors"
    for case in (LSTM, parse_case(LSTM), path, str(path), Selected(parse_case(LSTM))):
        report = oracle.assert_gradients(manual.module_gradients, case)
        assert report.ok and report["cx"].status == "pass" and report["h_l0"].status == "pass"


def test_assert_gradients_raises_the_report_naming_tensor_and_step():
    def drops_a_step(*args, **kw):
        g = manual.module_gradients(*args, **kw)
        g["gate_f_l0"][2] = 0  # step t = 3 wrong
        return g

    with pytest.raises(AssertionError) as e:
        oracle.assert_gradients(drops_a_step, LSTM)
    text = str(e.value)
    assert f"{LSTM}: FAIL (gate_f_l0)" in text and "first mismatch gate_f_l0[t=3" in text, text


def test_assert_gradients_raises_unsupported_and_refuses_what_is_no_case():
    with pytest.raises(oracle.Unsupported, match="a kernel for another cell"):
        oracle.assert_gradients("partial_candidates:supports_nothing", LSTM)
    with pytest.raises(TypeError, match="case must be a case name"):
        oracle.assert_gradients(manual.module_gradients, 42)
    with pytest.raises(ValueError, match="module case name must read"):
        oracle.assert_gradients(manual.module_gradients, "module/LSTM/oops")


@SLOW
def test_assert_gradients_isolated_fails_a_crash_as_the_case():
    with pytest.raises(AssertionError, match="FAIL"):
        oracle.assert_gradients("wrong_candidates:hard_exit", "many-to-one/tanh/mse/T2-B3-D4-H5-O3/float64",
                                isolate=True)


def run_example(tmp_path, kernel: str | None = None, *args) -> subprocess.CompletedProcess:
    """The example project copied, its kernel replaced by ``kernel`` (a module's source), its tests run."""
    project = tmp_path / "kernel_project"
    shutil.copytree(EXAMPLE, project)
    if kernel is not None:
        (project / "my_lstm.py").write_text(kernel)
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          capture_output=True, text=True, timeout=600, env=env)


@SLOW
def test_the_example_kernel_project_passes_and_skips_what_it_does_not_support(tmp_path):
    out = run_example(tmp_path, None, "-rs")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "42 passed, 78 skipped" in out.stdout and "unsupported: lengths" in out.stdout, out.stdout[-2000:]
    assert "unsupported: zoneout" in out.stdout  # the example's function has no zoneout_masks parameter


@SLOW
def test_the_example_run_against_manual_passes_every_case(tmp_path):
    out = run_example(tmp_path, "from manual import module_gradients as lstm_gradients  # noqa: F401\n")
    assert out.returncode == 0 and "120 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]


@SLOW
def test_the_example_run_against_a_wrong_kernel_fails_one_test_per_case_with_the_report(tmp_path):
    wrong = (EXAMPLE / "my_lstm.py").read_text().replace('"cx": dc_next[None]', '"cx": 0 * dc_next[None]')
    assert wrong != (EXAMPLE / "my_lstm.py").read_text()
    out = run_example(tmp_path, wrong, "-k", "T17 and float64")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "FAILED tests/test_my_lstm.py::test_lstm_backward[module/LSTM/L1/T17-B3-I5-H8/lengths-full/up-both/" \
           "float64]" in out.stdout, out.stdout[-3000:]
    assert "FAIL (cx)" in out.stdout and "cx           FAIL" in out.stdout, out.stdout[-3000:]
    assert "failed" in out.stdout.splitlines()[-1] and "passed" not in out.stdout.splitlines()[-1]


@SLOW
def test_the_marker_reads_a_golden_folder_in_onnx_layout_and_a_shard(tmp_path):
    from oracle.cli import main

    names = ["module/LSTM/L1/T5-B3-I3-H4/lengths-full/up-both/float64",
             "module/GRU/L2-bi/T5-B3-I3-H4/lengths-mixed/up-hn/float64"]
    (tmp_path / "tests").mkdir()
    argv = ["export", str(tmp_path / "tests" / "golden"), "--layout", "onnx"]
    for n in names:
        argv += ["--case", n]
    assert main(argv) == 0
    (tmp_path / "tests" / "test_onnx_kernel.py").write_text(
        "import pytest\nimport manual\nimport oracle\nfrom oracle.layouts import to_onnx\n\n\n"
        "def kernel(config, *args, **kw):\n"
        "    return to_onnx(config, manual.module_gradients(config, *args, **kw))\n\n\n"
        "@pytest.mark.bptt_cases('module', golden='golden', layout='onnx')\n"
        "def test_all(bptt_case):\n    oracle.assert_gradients(kernel, bptt_case)\n\n\n"
        "@pytest.mark.bptt_cases('module', golden='golden', layout='onnx', shard='1/2')\n"
        "def test_half(bptt_case):\n    oracle.assert_gradients(kernel, bptt_case)\n\n\n"
        "@pytest.mark.bptt_cases('LSTM and', golden='golden')\n"
        "def test_bad_expression(bptt_case):\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                          "--deselect", "tests/test_onnx_kernel.py::test_bad_expression", "--co"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "ends where a word was expected" in out.stdout + out.stderr, out.stdout[-2000:]  # a usage error
    (tmp_path / "tests" / "test_onnx_kernel.py").write_text(
        (tmp_path / "tests" / "test_onnx_kernel.py").read_text().split("@pytest.mark.bptt_cases('LSTM and'")[0])
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert all(f"test_all[{n}] PASSED" in out.stdout for n in names), out.stdout[-3000:]
    halves = [n for n in names if f"test_half[{n}] PASSED" in out.stdout]
    assert len(halves) == sum(in_shard(n, (1, 2)) for n in names), out.stdout[-3000:]


@SLOW
def test_a_marker_that_would_select_other_cases_than_meant_is_a_collection_error(tmp_path):
    (tmp_path / "tests").mkdir()
    markers = {"misspelt": "'GRU', golden_dir='golden'", "two_expressions": "'GRU and H8', 'float64'",
               "no_folder": "'GRU', golden='nowhere'", "bad_layout": "'GRU', layout='tf'",
               "stacked": "'GRU')\n@pytest.mark.bptt_cases('LSTM'"}
    for name, args in markers.items():  # one file each: a collection error ends its file's collection
        (tmp_path / "tests" / f"test_{name}.py").write_text(
            f"import pytest\n\n\n@pytest.mark.bptt_cases({args})\ndef test_it(bptt_case):\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "tests"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text[-3000:]
    assert "['golden_dir']" in text and "2 positional argument(s)" in text, text[-3000:]
    assert f"resolved relative to the test file: {tmp_path / 'tests' / 'nowhere'}) is not a folder" in text
    assert "layout must be one of" in text and "has 2 @pytest.mark.bptt_cases markers" in text


# ------------------------------------------------------------------ the matrix-state recurrences

RECURRENCE = "recurrence/gated_delta_rule-gv2-l2norm/T17-B3-H2-K8-V6/init-nograd/seqs-packed/up-both/float64"


def test_assert_gradients_judges_a_recurrence_case_and_names_head_and_step():
    assert oracle.assert_gradients(manual.recurrence_gradients, RECURRENCE).ok

    def drops_a_step(*args, **kw):
        g = manual.recurrence_gradients(*args, **kw)
        g["v"][0, 11, 3] = 0  # t = 12, value head 3
        return g

    with pytest.raises(AssertionError, match=r"first mismatch v\[t=12, b=0, head=3, 0\]"):
        oracle.assert_gradients(drops_a_step, RECURRENCE)


def test_the_documented_kernel_wrapper_passes_its_variant_and_declines_the_others():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import recurrence_wrapper
    finally:
        sys.path.remove(str(ROOT / "examples"))
    result = oracle.check(recurrence_wrapper.gated_delta_rule_gradients, "recurrence and T17 and float64",
                          isolate=False)
    mine = [r for r in result.results if r.case.variant == "gated_delta_rule"]
    assert result.ok and len(mine) == 22 and all(r.ok and not r.skipped for r in mine), str(result)
    assert all(r.skipped for r in result.results if r.case.variant != "gated_delta_rule")
