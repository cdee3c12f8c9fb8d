"""`bptt fuzz` finds every mutant of the catalogues and shrinks it to a case no larger than the smallest built-in
case that catches it; Unsupported steers the search; failures persist in the example database."""

import json

import pytest
from helpers import SLOW
from test_mutants import CATALOGUE, CELL_CATALOGUE, MODULE_CATALOGUE, RECURRENCE_CATALOGUE

from oracle.cases import builtin_cases, parse_case
from oracle.checker.run import check
from oracle.cli import main
from oracle.fuzzing import case_size, fuzz, parse_budget

# a recurrence mutant is searched among the cases of the variant it is wrong for
RECURRENCE_VARIANTS = {"initial_state_ungated": "gated_delta_rule", "gate_after_correction": "kda",
                       "dbeta_without_residual": "delta_rule", "gate_grad_wrong_axis": "gla",
                       "carry_across_boundary": "gla_head", "padding_written": "linear_attention",
                       "l2norm_without_projection": "delta_rule", "scale_twice": "linear_attention",
                       "dbeta_unwritten_past_32": "delta_rule", "scale_ignored": "gla_head",
                       "crash_without_initial_grad": "gated_delta_rule"}
MUTANTS = ([("seed", None, f"mutants:{m}") for m in CATALOGUE]
           + [("module", "RNN_TANH", f"module_mutants:{m}") for m in MODULE_CATALOGUE]
           + [("module", parse_case(case).mode, f"cell_mutants:{m}") for m, (case, *_) in CELL_CATALOGUE.items()]
           + [("recurrence", RECURRENCE_VARIANTS[m], f"recurrence_mutants:{m}")
              for m in (*RECURRENCE_CATALOGUE, "crash_without_initial_grad")])
FIRST_OF_EACH = {MUTANTS.index(next(m for m in MUTANTS if m[0] == model)) for model in ("seed", "module",
                                                                                         "recurrence")}


def smallest_builtin_catch(candidate: str, model: str, cell: str | None) -> int:
    """The size of the smallest built-in case (float64, the mutant's model and cell) on which it fails."""
    pool = [c for c in builtin_cases(dtypes=("float64",))
            if c.kind == model and (cell is None or getattr(c, "mode", getattr(c, "variant", None)) == cell)]
    for case in sorted(pool, key=case_size):
        if not check(candidate, [case], isolate=False).ok:
            return case_size(case)
    raise AssertionError(f"{candidate}: no built-in case catches it")


@pytest.mark.parametrize("model, cell, candidate", [
    pytest.param(*m, id=m[2], marks=() if i in FIRST_OF_EACH else SLOW) for i, m in enumerate(MUTANTS)])
def test_fuzz_finds_and_shrinks_every_mutant(model, cell, candidate):
    where = {"variant": cell} if model == "recurrence" else {"cell": cell}
    result = fuzz(candidate, model=model, **where, isolate=False, database=False, seed=0)
    assert result.exit_status == 1 and result.failure is not None, result.summary()
    shrunk = result.failure.case
    assert case_size(shrunk) <= smallest_builtin_catch(candidate, model, cell), result.summary()
    assert not check(candidate, [parse_case(shrunk.name)], isolate=False).ok  # the printed name replays it
    print(f"{candidate}: {result.found_after:.1f} s to find, {result.seconds:.1f} s in all; {shrunk.name}")


@SLOW
def test_fuzz_cli_isolated_prints_the_shrunk_case_and_writes_json(tmp_path, capsys):
    out = tmp_path / "f.json"
    code = main(["fuzz", "--candidate", "module_mutants:reverse_not_reversed", "--cell", "RNN_TANH",
                 "--database", str(tmp_path / "db"), "--json", str(out)])  # (with --seed hypothesis keeps none)
    text = capsys.readouterr().out
    assert code == 1 and "shrunk to:" in text and "bptt export golden/ --case module/RNN_TANH/" in text, text
    data = json.loads(out.read_text())
    assert data["command"] == "fuzz" and data["cases"][0]["status"] == "failed"
    assert any((tmp_path / "db").rglob("*")), "the failure is kept in hypothesis's example database"
    code = main(["fuzz", "--candidate", "module_mutants:reverse_not_reversed", "--cell", "RNN_TANH",
                 "--database", str(tmp_path / "db"), "--max-examples", "1"])
    again = capsys.readouterr().out
    shrunk = text.splitlines()[-3].split()[-1]
    assert code == 1 and again.splitlines()[-4].split()[-1] == shrunk, "a rerun starts from the kept failure"


def test_unsupported_steers_the_search_and_a_correct_candidate_passes():
    result = fuzz("partial_candidates:one_layer_only", cell="GRU", isolate=False, database=False, seed=0,
                  max_examples=30)
    assert result.exit_status == 0 and result.skipped and result.judged, result.summary()
    result = fuzz("partial_candidates:supports_nothing", cell="GRU", isolate=False, database=False, max_examples=5)
    assert result.exit_status == 2 and not result.judged


def test_a_wrong_answer_to_an_ungiven_gradient_is_not_judged():
    """A candidate told which gradients are needed may skip the others: fuzz never fails it for that."""
    result = fuzz("partial_candidates:honours_needs", cell="RNN_TANH", isolate=False, database=False, seed=0,
                  max_examples=40)
    assert result.exit_status == 0, result.summary() + str(result.failure)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("2.5", 2.5)])
def test_budget_reads_units(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("argv, says", [
    (["--model", "seed", "--cell", "LSTM"], "one cell and one layout"),
    (["--budget", "soon"], "budget must read like"),
])
def test_fuzz_usage_errors(argv, says, capsys):
    assert main(["fuzz", "--candidate", "manual:module_gradients", *argv]) == 2
    assert says in capsys.readouterr().err


def test_a_failure_that_does_not_repeat_is_reported_not_dropped():
    result = fuzz("partial_candidates:wrong_once", cell="GRU", isolate=False, database=False, seed=1,
                  max_examples=20)
    assert result.exit_status == 1 and result.flaky and "flaky" in result.summary(), result.summary()


def test_an_expression_narrows_the_search():
    result = fuzz("module_mutants:hn_at_T", cell="RNN_TANH", expression="L2 and not bi", isolate=False,
                  database=False, seed=0)
    assert result.failure.case.num_layers == 2 and not result.failure.case.bidirectional, result.summary()
