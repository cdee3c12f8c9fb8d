"""bfloat16 and float16 cases: exact inputs, float64 truth, judged against autograd in the same dtype
(oracle.policy: LOW_FACTOR, LOW_FLOOR, LOW_CAP)."""

import numpy as np
import pytest
import torch
from helpers import SLOW, export_golden

from contract.cells import CELLS
from oracle.cases import builtin_cases, parse_case
from oracle.cases.module import VARIANTS
from oracle.cases.select import select
from oracle.checker.run import check
from oracle.judge import compare
from oracle.policy import EPS, LOW_CAP, LOW_FLOOR
from oracle.precision import round_to

LSTM_BF16 = "module/LSTM/L1/T5-B3-I3-H4/lengths-mixed/up-both/bfloat16"
WRONG = ["hx_dropped_bf16", "forget_gate_a_step_late_bf16", "ten_times_autograds_error_bf16"]


def test_builtin_low_precision_cases_exist_for_every_cell_and_form():
    for dtype in ("bfloat16", "float16"):
        cases = select(builtin_cases(), f"module and {dtype}")
        assert {c.mode for c in cases} == set(CELLS)  # every cell, in each of its forms three times
        assert all(c.dtype == dtype for c in cases) and len(cases) == 3 * len(VARIANTS) == 51


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_inputs_are_exactly_numbers_of_the_dtype(dtype):
    case = parse_case(f"module/GRU/L2-bi/T5-B3-I3-H4/lengths-mixed/up-both/{dtype}")
    for a in case.float_tensors(case.inputs()).values():
        exact = torch.from_numpy(np.asarray(a, np.float32)).to(getattr(torch, dtype)).float().numpy()
        assert np.array_equal(exact, np.asarray(a, np.float32))
    assert round_to(np.array([1 + 2**-8], np.float32), "bfloat16")[0] == 1.0  # a tie rounds to even


@pytest.mark.parametrize("candidate", ["manual_bf16", "manual:module_gradients"])
def test_manual_in_bfloat16_and_a_float32_computation_pass(candidate):
    spec = candidate if ":" in candidate else f"low_precision:{candidate}"
    result = check(spec, "module and bfloat16", isolate=False)
    assert result.ok and len(result.results) == 3 * len(VARIANTS), str(result)


def test_manual_in_float16_passes():
    assert check("low_precision:manual_f16", "module and float16", isolate=False).ok


@pytest.mark.parametrize("candidate", WRONG)
def test_a_bfloat16_wrong_candidate_fails(candidate):
    result = check(f"low_precision:{candidate}", [parse_case(LSTM_BF16)], isolate=False)
    assert result.exit_status == 1, str(result)
    named = {"hx_dropped_bf16": "hx", "forget_gate_a_step_late_bf16": "gate_f_l0",
             "ten_times_autograds_error_bf16": "weight_hh_l0"}[candidate]
    assert not result.results[0].report[named].ok, str(result)


def test_the_floor_keeps_a_zero_autograd_error_from_making_the_bound_zero():
    want = {"w": np.array([1.0, 2.0])}
    ref = {"w": np.array([1.0, 2.0])}  # autograd exact
    off = LOW_FLOOR * EPS["bfloat16"] * 2 * 0.5  # half the floor, on the scale 2
    assert compare({"w": want["w"] + off}, want, dtype="bfloat16", ref=ref).ok
    assert not compare({"w": want["w"] + 2 * LOW_FLOOR * EPS["bfloat16"] * 2}, want, dtype="bfloat16", ref=ref).ok


def test_the_cap_holds_however_poor_autograd_is():
    want = {"w": np.array([1.0, -1.0])}
    ref = {"w": np.array([0.0, 0.0])}  # autograd off by 100 %
    assert not compare({"w": want["w"] * (1 + 2 * LOW_CAP)}, want, dtype="bfloat16", ref=ref).ok


@SLOW
def test_bfloat16_golden_files_judge_as_the_builtin_cases(tmp_path):
    export_golden(tmp_path, [LSTM_BF16, "module/GRU/L2-bi/T5-B3-I3-H4/lengths-mixed/up-both/float16"])
    assert check("low_precision:manual_bf16", "bfloat16", golden=tmp_path, isolate=True).ok
    assert check("low_precision:hx_dropped_bf16", "bfloat16", golden=tmp_path, isolate=True).exit_status == 1
    assert check("low_precision:manual_f16", "float16", golden=tmp_path, isolate=False).ok
