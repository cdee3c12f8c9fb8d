"""Known wrong derivations are caught: `bptt check` fails and names the tensor and the first time step."""

import re

import pytest
from helpers import export_golden

from oracle.cli import main

T = 17  # the golden cases below are T17-B3-D4-H5-O3
# mutant → (case selector, {tensor: first step wrong in backward order, or None for non-step tensors})
CATALOGUE = {
    "dWhh_transposed": ("many-to-one/tanh/mse/", {"Whh": None}),
    "h_t_for_h_prev": ("many-to-one/tanh/mse/", {"Whh": None}),
    "act_prime_of_next_step": ("many-to-one/tanh/mse/", {"z": T - 1, "h": T - 2, "Wxh": None, "h0": None}),
    "drop_direct_term": ("many-to-many/tanh/mse/", {"h": T - 1, "z": T - 1, "Whh": None, "x": T - 1}),
    "tanh_prime_for_any_act": ("many-to-many/sigmoid/bce/", {"z": T, "h": T - 1, "bh": None}),
    "Whh_transpose_missing": ("many-to-one/relu/mse/", {"h": T - 1, "z": T - 1, "h0": None}),
    "dh0_left_zero": ("one-to-many/tanh/cross_entropy/", {"h0": None}),
    "last_step_only": ("many-to-many/identity/mse/", {"Whh": None, "Wxh": None, "bh": None}),
}
PASSING = {"dWhh_transposed": ["Wxh", "bh", "Why", "by", "h0", "x", "h", "z"],
           "dh0_left_zero": ["Wxh", "Whh", "bh", "Why", "by", "x", "h", "z"],
           "last_step_only": ["Why", "by", "h0", "x", "h", "z"]}


def first_fast(names: list) -> list:
    """A catalogue's first mutant in the fast subset, the others marked slow (the full run takes every one)."""
    return [pytest.param(n, marks=() if i == 0 else pytest.mark.slow) for i, n in enumerate(names)]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    assert main(["export", str(folder), "-k", f"T{T}-B3-D4-H5-O3/float64"]) == 0
    return folder


def report_of(out: str, tensor: str) -> str:
    m = re.search(rf"^  {tensor} +(FAIL|pass) .*?(?=^  \S|\Z)", out, re.M | re.S)
    assert m, f"no line for {tensor} in:\n{out}"
    return m.group(0)


def test_an_independent_correct_implementation_passes(golden, capsys):
    assert main(["check", str(golden), "--candidate", "mutants:correct"]) == 0
    assert "36 cases: 36 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("mutant", first_fast(list(CATALOGUE)))
def test_mutant_is_caught(mutant, golden, capsys):
    selector, wrong = CATALOGUE[mutant]
    assert main(["check", str(golden), "--candidate", f"mutants:{mutant}", "-k", selector]) == 1
    assert_named(capsys.readouterr().out, mutant, wrong, PASSING.get(mutant, []))


def assert_named(out: str, mutant: str, wrong: dict, right: list) -> None:
    """One failing case whose report names every tensor of ``wrong`` FAIL (with its first wrong step in backward
    order where one is given) and every tensor of ``right`` pass."""
    assert "1 case: 0 passed, 1 failed" in out, out
    for tensor, step in wrong.items():
        block = report_of(out, tensor)
        assert " FAIL " in block.splitlines()[0], f"{mutant}: {tensor} not named as failing:\n{out}"
        if step is not None:
            assert f"backward pass first wrong at t={step}" in block, f"{mutant}: {tensor}:\n{block}"
    for tensor in right:
        assert " pass " in report_of(out, tensor).splitlines()[0], f"{mutant}: {tensor} should pass:\n{out}"


# ------------------------------------------------------------------ the module's mistakes, named by torch's names

MODULE_CASE = "module/RNN_TANH/L2-bi/T6-B3-I3-H4/lengths-mixed/up-both/float64"  # lengths 1, 6, 3
MODULE_CATALOGUE = {  # mutant → (tensors that must FAIL, tensors that must pass)
    "reverse_not_reversed": (["weight_hh_l0_reverse", "h_l0_reverse", "z_l1_reverse", "input"], []),
    "hn_at_T": (["h_l0", "weight_hh_l0", "hx"], []),
    "layer_grad_not_flowing": (["weight_ih_l0", "weight_hh_l0_reverse", "h_l0", "input"],
                               ["weight_ih_l1", "weight_hh_l1_reverse", "h_l1", "z_l1_reverse"]),
    "bias_hh_dropped": (["bias_hh_l0", "bias_hh_l1_reverse"],
                        ["bias_ih_l0", "bias_ih_l1_reverse", "weight_hh_l0", "input", "h_l0"]),
}


@pytest.fixture(scope="module")
def module_golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("module_golden")
    assert main(["export", str(folder), "--case", MODULE_CASE]) == 0
    return folder


def test_an_independent_module_implementation_passes(module_golden, capsys):
    assert main(["check", str(module_golden), "--candidate", "module_mutants:correct"]) == 0
    assert "1 case: 1 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("mutant", first_fast(list(MODULE_CATALOGUE)))
def test_module_mutant_is_caught_and_named(mutant, module_golden, capsys):
    wrong, right = MODULE_CATALOGUE[mutant]
    assert main(["check", str(module_golden), "--candidate", f"module_mutants:{mutant}"]) == 1
    out = capsys.readouterr().out
    for tensor in wrong:
        assert re.search(rf"^  {tensor} +FAIL ", out, re.M), f"{mutant}: {tensor} not named as failing:\n{out}"
    for tensor in right:
        assert re.search(rf"^  {tensor} +pass ", out, re.M), f"{mutant}: {tensor} should pass:\n{out}"


def test_a_per_step_failure_names_layer_direction_and_step(module_golden, capsys):
    main(["check", str(module_golden), "--candidate", "module_mutants:reverse_not_reversed"])
    out = capsys.readouterr().out
    assert re.search(r"first mismatch h_l0_reverse\[t=\d+, b=\d, i=\d\]", out), out


# ------------------------------------------------------------------ LSTM and GRU mistakes, named by gate and step

LSTM_CASE = "module/LSTM/L1-p2/T6-B3-I3-H4/lengths-full/up-both/float64"
GRU_CASE = "module/GRU/L1/T6-B3-I3-H4/lengths-full/up-both/float64"
INDRNN_CASE = "module/INDRNN/L1/T6-B3-I3-H4/lengths-full/up-both/float64"
MINGRU_CASE = "module/MINGRU/L1/T6-B3-I3-H4/lengths-full/up-both/float64"
MINLSTM_CASE = "module/MINLSTM/L1/T6-B3-I3-H4/lengths-full/up-both/float64"
SLSTM_CASE = "module/SLSTM/L1-nh2/T6-B3-I3-H4/lengths-full/up-both/float64"
LNLSTM_CASE = "module/LNLSTM/L1/T6-B3-I3-H4/lengths-full/up-both/float64"
GRU_ZONEOUT_CASE = "module/GRU/L1-zo/T6-B3-I3-H4/lengths-full/up-both/float64"
CELL_CATALOGUE = {  # mutant → (case, tensors that must FAIL, tensors that must pass)
    "forget_from_c_t": (LSTM_CASE, ["gate_f_l0", "weight_hh_l0"], []),
    "cell_carry_missing": (LSTM_CASE, ["c_l0", "gate_i_l0", "cx"], []),
    "i_and_f_swapped": (LSTM_CASE, ["gate_i_l0", "gate_f_l0", "weight_ih_l0"], []),
    "projection_left_out": (LSTM_CASE, ["weight_hr_l0"], ["weight_hh_l0", "h_l0", "c_l0", "input"]),
    "grad_cn_ignored": (LSTM_CASE, ["c_l0", "cx", "gate_f_l0"], []),
    "reset_in_the_other_form": (GRU_CASE, ["gate_r_l0", "gate_n_l0", "weight_hh_l0"], []),
    "b_hn_as_b_in": (GRU_CASE, ["bias_hh_l0"], ["bias_ih_l0", "weight_hh_l0", "gate_n_l0", "input"]),
    "u_from_h_t": (INDRNN_CASE, ["weight_hh_l0"], ["weight_ih_l0", "h_l0", "z_l0", "input", "hx"]),
    "diagonal_as_matrix": (INDRNN_CASE, ["weight_hh_l0", "h_l0", "hx"], []),
    "carry_by_z": (MINGRU_CASE, ["h_l0", "gate_z_l0", "hx"], []),
    "normalisation_not_differentiated": (MINLSTM_CASE, ["gate_f_l0", "gate_i_l0", "weight_ih_l0"],
                                         ["h_l0", "gate_h_l0", "hx"]),
    "normaliser_carried_by_i": (SLSTM_CASE, ["n_l0", "gate_i_l0", "nx"], []),
    "stabiliser_differentiated": (SLSTM_CASE, ["gate_i_l0", "gate_f_l0", "weight_ih_l0", "mx"], []),
    "head_blocks_transposed": (SLSTM_CASE, ["weight_hh_l0", "h_l0", "hx"], []),
    "layer_norm_without_projection": (LNLSTM_CASE, ["c_l0", "gate_f_l0", "weight_hh_l0", "weight_ih_l0", "input"],
                                      []),
    "zoneout_mask_of_step_1": (GRU_ZONEOUT_CASE, ["h_l0", "gate_z_l0", "gate_n_l0", "hx"], []),
}


@pytest.fixture(scope="module")
def cell_golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cell_golden")
    cases = (LSTM_CASE, GRU_CASE, INDRNN_CASE, MINGRU_CASE, MINLSTM_CASE, SLSTM_CASE, LNLSTM_CASE, GRU_ZONEOUT_CASE)
    assert main(["export", str(folder), *(a for c in cases for a in ("--case", c))]) == 0
    return folder


def test_an_independent_lstm_gru_and_indrnn_implementation_passes(cell_golden, capsys):
    assert main(["check", str(cell_golden), "--candidate", "cell_mutants:correct"]) == 0
    assert "8 cases: 8 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("mutant", first_fast(list(CELL_CATALOGUE)))
def test_cell_mutant_is_caught_and_named(mutant, cell_golden, capsys):
    case, wrong, right = CELL_CATALOGUE[mutant]
    selector = case  # that case alone
    assert main(["check", str(cell_golden), "--candidate", f"cell_mutants:{mutant}", "-k", selector]) == 1
    out = capsys.readouterr().out
    for tensor in wrong:
        assert re.search(rf"^  {tensor} +FAIL ", out, re.M), f"{mutant}: {tensor} not named as failing:\n{out}"
    for tensor in right:
        assert re.search(rf"^  {tensor} +pass ", out, re.M), f"{mutant}: {tensor} should pass:\n{out}"


def test_a_gate_failure_names_gate_and_step(cell_golden, capsys):
    main(["check", str(cell_golden), "--candidate", "cell_mutants:forget_from_c_t", "-k", "module/LSTM/"])
    out = capsys.readouterr().out
    assert re.search(r"first mismatch gate_f_l0\[t=\d+, b=\d, i=\d\]; backward pass first wrong at t=6", out), out


# ------------------------------------------------------------------ the matrix-state recurrences' mistakes

GDR = "recurrence/gated_delta_rule/T9-B2-H2-K4-V5/init-grad/seqs-batch/up-both/float64"
RECURRENCE_CASES = {"gdr": GDR, "kda": GDR.replace("gated_delta_rule", "kda"),
                    "gla_square": "recurrence/gla/T9-B2-H2-K4-V4/init-grad/seqs-batch/up-both/float64",
                    "packed": "recurrence/gated_delta_rule/T20-B3-H2-K4-V5/init-grad/seqs-packed/up-both/float64",
                    "l2norm": GDR.replace("gated_delta_rule", "delta_rule-l2norm"),
                    "nograd": GDR.replace("init-grad", "init-nograd"),
                    "beta_v40": "recurrence/delta_rule-betav/T5-B1-H1-K4-V40/init-grad/seqs-batch/up-both/float64",
                    "scaled": GDR.replace("gated_delta_rule", "gated_delta_rule-scale2"),
                    "everything": "recurrence/kda-betav-gv2-l2norm/T20-B3-H2-K8-V6/init-nograd/seqs-packed/up-both/"
                                  "float64"}
# mutant → (case, {tensor that must FAIL: its first wrong step in backward order, or None}, tensors that must pass).
# packed: sequences of 1, 9 and 9 steps, then one step of padding (t = 20)
RECURRENCE_CATALOGUE = {
    "initial_state_ungated": ("gdr", {"initial_state": None}, ["q", "k", "v", "g", "beta", "S"]),
    "gate_after_correction": ("kda", {"q": 9, "k": 9, "v": 9, "g": 9, "beta": 9, "S": 8, "initial_state": None}, []),
    "dbeta_without_residual": ("gdr", {"beta": 9}, ["q", "k", "v", "g", "initial_state", "S"]),
    "gate_grad_wrong_axis": ("gla_square", {"g": 9}, ["q", "k", "v", "initial_state", "S"]),
    "carry_across_boundary": ("packed", {"q": 19, "k": 19, "g": 19, "beta": 19}, ["v", "initial_state", "S"]),
    "padding_written": ("packed", {"q": 20, "k": 20, "v": 20}, ["g", "beta", "initial_state", "S"]),
    "l2norm_without_projection": ("l2norm", {"q": 9, "k": 9}, ["v", "beta", "initial_state", "S"]),
    "scale_twice": ("gdr", {"q": 9}, ["k", "v", "g", "beta", "initial_state", "S"]),
    "dbeta_unwritten_past_32": ("beta_v40", {"beta": 5}, ["q", "k", "v", "initial_state", "S"]),
    "scale_ignored": ("scaled", {"q": 9, "S": 9}, []),
}


@pytest.fixture(scope="module")
def recurrence_golden(tmp_path_factory):
    return export_golden(tmp_path_factory.mktemp("recurrence"), list(RECURRENCE_CASES.values()))


def test_an_independent_recurrence_implementation_passes(recurrence_golden, capsys):
    assert main(["check", str(recurrence_golden), "--candidate", "recurrence_mutants:correct"]) == 0
    assert "9 cases: 9 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("mutant", first_fast(list(RECURRENCE_CATALOGUE)))
def test_recurrence_mutant_is_caught_and_named_by_tensor_and_step(mutant, recurrence_golden, capsys):
    case, wrong, right = RECURRENCE_CATALOGUE[mutant]
    argv = ["check", str(recurrence_golden), "--candidate", f"recurrence_mutants:{mutant}"]
    assert main([*argv, "--case", RECURRENCE_CASES[case]]) == 1
    assert_named(capsys.readouterr().out, mutant, wrong, right)


def test_a_kernel_that_crashes_when_the_initial_state_needs_no_gradient_fails_with_its_error(recurrence_golden,
                                                                                              capsys):
    argv = ["check", str(recurrence_golden), "--candidate", "recurrence_mutants:crash_without_initial_grad"]
    assert main([*argv, "--case", RECURRENCE_CASES["nograd"]]) == 1
    assert "raised RuntimeError: a kernel's backward that assumes dh0" in capsys.readouterr().out


def test_a_recurrence_failure_names_head_and_step(recurrence_golden, capsys):
    argv = ["check", str(recurrence_golden), "--candidate", "recurrence_mutants:padding_written"]
    main([*argv, "--case", RECURRENCE_CASES["packed"]])
    assert re.search(r"first mismatch q\[t=20, b=0, head=0, 0\]; backward pass first wrong at t=20",
                     capsys.readouterr().out)


@pytest.mark.parametrize("mutant, expression, tensor", [
    ("dbeta_unwritten_past_32", "recurrence and betav and float32", "beta"),
    ("scale_ignored", "recurrence and scale2 and float32", "q"),
    ("padding_written", "recurrence and packed and float32", "k"),
])
def test_the_builtin_recurrence_matrix_catches_the_shipped_kinds_of_bug(mutant, expression, tensor):
    """Not only a hand-made case: the built-in cases a kernel writer exports catch each (β per value channel past 32
    channels, the scale ignored, the padding written), and name the tensor."""
    import recurrence_mutants

    from oracle.checker.run import check

    result = check(getattr(recurrence_mutants, mutant), expression, isolate=False)
    failed = [r for r in result.results if not r.ok]
    assert failed and all(not r.report[tensor].ok for r in failed if r.report is not None), result.text()
