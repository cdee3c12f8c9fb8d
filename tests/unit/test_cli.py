"""The `bptt` command: exit codes 0 / 1 / 2, help, tables, JSON, and the console script itself."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oracle.cases import builtin_cases
from oracle.cases.seed import Case, all_cases
from oracle.cli import main


@pytest.mark.parametrize("sub", ["verify", "derive", "export", "check"])
def test_help(sub, capsys):
    assert main([sub, "--help"]) == 0
    assert "usage: bptt" in capsys.readouterr().out


def test_verify_subset_prints_group_summary_table_with_v_and_json(capsys, tmp_path):
    out_json = tmp_path / "v.json"
    assert main(["verify", "-k", "/tanh/mse/T17", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "many-to-one/tanh/mse/T17-B3-D4-H5-O3/float64" not in out, "the full table is -v's"
    assert re.search(r"^seed model +float64 +3 +3 +0 +0 +\d\.\de-\d\d$", out, re.M), out
    assert "PASS: 6 cases" in out and "TF32 off" in out and "device cpu" in out
    data = json.loads(out_json.read_text())
    assert data["ok"] and data["command"] == "verify" and len(data["cases"]) == 6
    first = data["cases"][0]
    assert first["status"] == "passed" and first["group"] == "seed model" and first["worst"] < 1e-12
    assert {"autograd", "nn.RNN"} == set(first["reports"])
    assert {t["status"] for t in first["reports"]["nn.RNN"]} == {"judged"}
    assert main(["verify", "-k", "/tanh/mse/T17", "-v"]) == 0
    out = capsys.readouterr().out
    assert "many-to-one/tanh/mse/T17-B3-D4-H5-O3/float64" in out and "verdict" in out


@pytest.mark.slow
def test_verify_whole_builtin_matrix_through_the_console_script():
    """The main job as a user runs it: the installed `bptt` script, every built-in case, on the CPU."""
    script = Path(sys.executable).with_name("bptt")  # the console script pip installed beside python
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "oracle.cli"]
    out = subprocess.run([*cmd, "verify", "-q", "--device", "cpu"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    n = len(builtin_cases())  # the seed model's matrix, the module matrix and the recurrences'
    # the Elman cell's two whole matrices and 96 per form of a gated cell (LSTM, GRU, IndRNN: 2304 with them), the
    # Elman cell's zoneout matrix (576), 96 per form of minGRU and minLSTM (384), of the sLSTM's three forms (576),
    # the LayerNorm-LSTM (192), the LSTM's and GRU's zoneout forms (384), their size sweeps (2 × 48), 51 bfloat16
    # and 51 float16 cases; the recurrences' 498 in float64 and float32 and 36 in bfloat16 and float16
    assert f"PASS: {n} cases" in out.stdout and n == len(all_cases()) + 2304 + 576 + 384 + 576 + 192 + 384 + 96 + \
        102 + 498 + 36
    assert "bfloat16" in out.stdout and "float16" in out.stdout  # the summary's worst error per dtype


def test_verify_unknown_selection_is_usage_error(capsys):
    assert main(["verify", "-k", "no-such-case"]) == 2
    assert "selects no case" in capsys.readouterr().err


def test_verify_list(capsys):
    assert main(["verify", "--list", "--dtype", "float64"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(builtin_cases(dtypes=("float64",)))


def test_bad_case_name_is_usage_error(capsys):
    assert main(["export", "/tmp/never", "--case", "many-to-many/tanh/mse/T4/float64"]) == 2
    assert "case name must read" in capsys.readouterr().err


def test_case_names_parse_back():
    for c in all_cases()[::17]:
        assert Case.parse(c.name) == c


@pytest.mark.parametrize("steps, activation", [(2, "tanh"), (4, "sigmoid"), (7, "relu"), (1, "identity")])
def test_derive_shows_each_equation(steps, activation, capsys):
    assert main(["derive", "--steps", str(steps), "--activation", activation]) == 0
    out = capsys.readouterr().out
    assert f"dL/dh{steps} = dL/dy ⋅ Why" in out and "MISMATCH" not in out
    assert out.count("    manual   ") == out.count("    autograd ") == (steps + 2) + (2 * steps + 1)
    assert out.index("Forward propagation") < out.index(f"h{steps} = {activation}(") < out.index("BPTT\n")
    if steps > 1:
        assert "(through the future)" in out


@pytest.mark.parametrize("name, words", [
    ("many-to-one/tanh/mse/T100000000-B100000-D1000-H1000-O1/float64", ["too large", "Remedy"]),
    ("module/LSTM/L100000/T5-B3-I3-H4/lengths-full/up-hn/float64", ["100000 layers", "at most 16"]),
    ("many-to-one/tanh/mse/T\u0661-B2-D3-H4-O2/float64", ["ASCII"]),
])
def test_case_name_that_asks_too_much_is_usage_error(capsys, name, words):
    """A typo must not ask for petabytes (a traceback, exit 1) or a hundred thousand layers (a hang)."""
    assert main(["verify", "--case", name, "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err


def test_derive_bad_steps_is_usage_error(capsys):
    assert main(["derive", "--steps", "0"]) == 2


def test_unknown_subcommand_is_usage_error(capsys):
    assert main(["frobnicate"]) == 2


def test_check_bad_candidate_spec(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"")
    assert main(["check", str(tmp_path), "--candidate", "manual"]) == 2
    assert "MODULE:FUNCTION" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--candidate", "no_such_module:f"]) == 2


def test_check_folder_errors(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing"), "--candidate", "manual:gradients"]) == 2
    assert main(["check", str(tmp_path), "--candidate", "manual:gradients"]) == 2
    assert "holds no .safetensors" in capsys.readouterr().err


def test_check_candidate_that_raises_fails_the_case(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--case", "many-to-one/tanh/mse/T2-B1-D2-H2-O1/float64"]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path), "--candidate", "mutants:not_a_dict"]) == 1
    assert "returned list, expected a dict" in capsys.readouterr().out
    assert main(["check", str(tmp_path), "--candidate", "builtins:print"]) == 1
    assert "FAIL (no usable gradient set)" in capsys.readouterr().out


# ------------------------------------------------------------------ runs that cannot be made: exit 2, no traceback

def no_traceback(capsys):
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err, out.err
    return out.err


def test_unwritable_json_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import oracle.verify
    monkeypatch.setattr(oracle.verify, "verify", lambda *a, **k: pytest.fail("ran before checking --json"))
    assert main(["verify", "-k", "/tanh/mse/T17", "--json", str(tmp_path / "no/such/dir/v.json")]) == 2
    assert "--json" in no_traceback(capsys)
    assert main(["verify", "-k", "/tanh/mse/T17", "--json", str(tmp_path)]) == 2  # a folder
    assert "Remedy" in no_traceback(capsys)


def test_export_to_a_file_or_an_unwritable_folder_is_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["export", str(afile), "-k", "T1-B1"]) == 2
    assert "is a file, not a folder" in no_traceback(capsys)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: the permission check cannot be made here
        locked = Path("/proc/golden")  # a folder nobody can create
    assert main(["export", str(locked), "-k", "T1-B1"]) == 2
    assert "cannot write golden files" in no_traceback(capsys)


@pytest.mark.parametrize("sub", [["verify"], ["export", "/tmp/never-written"]])
def test_nothing_selected_is_exit_2_everywhere(sub, capsys):
    assert main([*sub, "-k", "no-such-case"]) == 2
    assert "selects no case" in no_traceback(capsys)


def test_derive_negative_seed_is_exit_2(capsys):
    assert main(["derive", "--seed", "-1"]) == 2
    assert "--seed must be a non-negative integer" in no_traceback(capsys)


@pytest.mark.slow
def test_verify_jobs_gives_the_same_verdicts(capsys):
    assert main(["verify", "-q", "-k", "T17-B3-D4-H5-O3", "--jobs", "2"]) == 0
    two = capsys.readouterr().out
    assert main(["verify", "-q", "-k", "T17-B3-D4-H5-O3", "--jobs", "1"]) == 0
    one = capsys.readouterr().out
    tail = lambda s: s.strip().splitlines()[-1].rsplit(";", 1)[0]  # noqa: E731 - the summary without the time
    assert tail(one) == tail(two) and "PASS: 72 cases" in one


def test_ctrl_c_is_exit_130_without_traceback(monkeypatch, capsys):
    import oracle.verify

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(oracle.verify, "verify", interrupted)
    assert main(["verify", "-k", "T1-B1"]) == 130
    assert "interrupted" in no_traceback(capsys)


@pytest.mark.parametrize("cell, per_step, totals, line", [
    ("lstm", 6, 3, "dL/dc3 = dL/dc4 ⊙ f4 + dL/dh3"), ("gru", 4, 4, "dL/da_n2 = dL/dh2 ⊙ (1 − z2)"),
    ("indrnn", 2, 3, "dL/dh2 = dL/doutput2 + dL/dz3 ⊙ u"),
])
def test_derive_cell_shows_each_equation(cell, per_step, totals, line, capsys):
    assert main(["derive", "--cell", cell, "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and out.count("    manual   ") == out.count("    autograd ")
    assert out.count("    manual   ") == 4 * per_step + totals and line in out, out


def test_derive_cell_flags_a_wrong_manual(monkeypatch, capsys):
    import manual
    right = manual.module_gradients

    def wrong(*a, **k):
        g = right(*a, **k)
        g["gate_f_l0"] = g["gate_f_l0"] * 1.01
        return g
    monkeypatch.setattr(manual, "module_gradients", wrong)
    assert main(["derive", "--cell", "lstm"]) == 1
    out = capsys.readouterr().out
    assert "dL/da_f3 = dL/dc3 ⊙ c2 ⊙ f3(1 − f3)" in out and "MISMATCH" in out


@pytest.mark.parametrize("variant, per_step, line", [  # per step: dS, dq, dk, dv (and dβ, dg where they apply)
    ("linear_attention", 4, "dL/dk_2 = dS_2 v_2"), ("gla_head", 5, "dL/dS_2 = e^(g_3) dS'_3 + s q_2 do_2ᵀ"),
    ("gla", 5, "(over V),   dS'_2 = dS_2,   S'_2 = diag(e^(g_2)) S_1"), ("delta_rule", 5, "u_3 = v_3 − S'_3ᵀ k_3"),
    ("gated_delta_rule", 6, "dL/dinitial_state = e^(g_1) dS'_1"), ("kda", 6, "dS'_1 = dS_1 − k_1 dL/dv_1ᵀ"),
])
def test_derive_recurrence_shows_each_equation(variant, per_step, line, capsys):
    assert main(["derive", "--recurrence", variant]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and out.count("    manual   ") == out.count("    autograd ")
    assert out.count("    manual   ") == 3 * per_step + 1 and line in out, out


def test_derive_recurrence_flags_a_wrong_manual_and_takes_no_cell(monkeypatch, capsys):
    import manual
    right = manual.recurrence_gradients

    def wrong(*a, **k):
        g = right(*a, **k)
        g["beta"] = g["beta"] * 1.01
        return g
    monkeypatch.setattr(manual, "recurrence_gradients", wrong)
    assert main(["derive", "--recurrence", "kda"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["derive", "--recurrence", "kda", "--cell", "gru"]) == 2
    assert "no cell and no activation" in capsys.readouterr().err


def test_derive_activation_must_be_the_cells(capsys):
    assert main(["derive", "--cell", "lstm", "--activation", "relu"]) == 2
    assert "not one of the lstm cell's ('tanh',)" in capsys.readouterr().err
    assert main(["derive", "--cell", "indrnn", "--activation", "relu", "--steps", "2"]) == 0
    assert "INDRNN layer, act = relu" in capsys.readouterr().out


@pytest.mark.parametrize("name, words", [
    ("module/RNN_RELU/L1-relu/T5-B3-I3-H4/lengths-full/up-both/float64", "has no other"),
    ("module/INDRNN/L1-tanh/T5-B3-I3-H4/lengths-full/up-both/float64", "must read"),
])
def test_a_case_name_carries_only_another_nonlinearity(name, words, capsys):
    """A name round-trips: the default nonlinearity is never written, so a flag for it is refused."""
    assert main(["verify", "--case", name, "-q"]) == 2 and words in capsys.readouterr().err
