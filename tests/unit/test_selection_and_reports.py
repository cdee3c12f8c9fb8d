"""-k expressions, shards and `bptt merge`, Unsupported candidates, and what check and verify print and write."""

import json
import re

import pytest
from helpers import SLOW

import oracle
from oracle.cases import builtin_cases, parse_case
from oracle.cases.select import compile_expression, in_shard, parse_shard, parts, select, shard_of
from oracle.checker.run import check
from oracle.cli import main

NAMES = ["module/LSTM/L1/T5-B3-I3-H4/lengths-full/up-both/float64",
         "module/LSTM/L1-bi/T5-B3-I3-H4/lengths-full/up-both/float64",
         "module/LSTM/L2-p2/T50-B3-I3-H4/lengths-mixed/up-hn/float32",
         "module/GRU/L1/T5-B3-I3-H4/lengths-full/up-both/float64",
         "many-to-one/tanh/mse/T17-B3-D4-H5-O3/float64"]
VOCAB = set().union(*(parts(n) for n in NAMES))


def picked(expr: str) -> list[int]:
    keep = compile_expression(expr, VOCAB)
    return [i for i, n in enumerate(NAMES) if keep(n)]


@pytest.mark.parametrize("expr, want", [
    ("LSTM and L1 and not bi", [0]),
    ("LSTM and (L1 or p2) and not bi", [0, 2]),
    ("not module", [4]),
    ("T5", [0, 1, 3]),  # a part matches whole parts only: not T50
    ("T5-B3", [0, 1, 3]),  # no part: a substring, as a plain -k always was
    ("module/LSTM", [0, 1, 2]),
    ("many-to-one", [4]),
    ("float32 or GRU", [2, 3]),
    ("not not GRU", [3]),
])
def test_expression_selects_by_parts_and_substrings(expr, want):
    assert picked(expr) == want


@pytest.mark.parametrize("expr, says", [("LSTM and", "ends where a word"), ("(LSTM or GRU", "not closed"),
                                        ("LSTM GRU", "unexpected 'GRU'"), ("", "is empty"), ("and LSTM", "'and'")])
def test_a_malformed_expression_is_a_value_error_with_a_remedy(expr, says):
    with pytest.raises(ValueError, match=re.escape(says)) as e:
        compile_expression(expr, VOCAB)
    assert "Remedy" in str(e.value)


def test_a_repeated_k_is_a_usage_error_not_a_replacement(capsys):
    assert main(["verify", "--list", "-k", "module/LSTM", "-k", "float32"]) == 2
    err = capsys.readouterr().err
    assert "-k given twice" in err and "module/LSTM and float32" in err


def test_list_shows_what_an_expression_selects(capsys):
    assert main(["verify", "--list", "-k", "LSTM and L1 and not bi and not p2 and lengths and full"]) == 0
    names = capsys.readouterr().out.split()
    form = r"module/LSTM/L1(-bf)?(-nobias)?(-zo)?/.*/lengths-full/.*"
    assert names and all(re.fullmatch(form, n) for n in names), names
    assert len(names) > 16, "one-layer LSTM kernels get more than the parity matrix's 16 cases"
    assert {parse_case(n).T for n in names} >= {1, 2, 17, 64} and {parse_case(n).H for n in names} >= {1, 8, 33}


@pytest.mark.parametrize("text", ["0/4", "5/4", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match="i/N"):
        parse_shard(text)


def test_shards_partition_the_selection_stably():
    cases = builtin_cases()
    split = [shard_of(cases, (i, 4)) for i in range(1, 5)]
    assert sorted(c.name for s in split for c in s) == sorted(c.name for c in cases)
    assert all(len(s) > len(cases) // 8 for s in split)  # none empty or lopsided
    assert [c.name for c in shard_of(select(cases, "GRU"), (2, 4))] == \
        [c.name for c in split[1] if c in set(select(cases, "GRU"))]  # a case's shard is its name's, not the set's


# ------------------------------------------------------------------ Unsupported

LSTMS = "module/LSTM and float64 and up-both and lengths-full and not bf and not nobias and not zo and T5-B3"


def test_unsupported_cases_are_skipped_and_counted_apart():
    result = check("partial_candidates:one_layer_only", LSTMS, isolate=False)
    assert result.ok and result.exit_status == 0
    n, skipped = len(result.results), len(result.skipped)
    assert skipped and skipped < n and all(r.case.num_layers > 1 for r in result.skipped)
    assert result.summary() == f"{n} cases: {n - skipped} passed, {skipped} skipped (unsupported: num_layers > 1), " \
                               "0 failed"


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=SLOW)])
def test_a_declaration_skips_without_calling(isolate):
    result = check("partial_candidates:declares_no_projection", LSTMS, isolate=isolate)
    assert result.ok and {r.case.proj_size > 0 for r in result.skipped} == {True}
    assert "proj_size" in result.summary()


def test_all_unsupported_is_no_verdict(capsys, tmp_path):
    result = check("partial_candidates:supports_nothing", LSTMS, isolate=False)
    assert not result.ok and result.exit_status == 2 and not result.failures
    assert main(["export", str(tmp_path), "--case", "module/LSTM/L1/T2-B1-I2-H3/lengths-full/up-both/float64"]) == 0
    assert main(["check", str(tmp_path), "--candidate", "partial_candidates:supports_nothing", "--in-process"]) == 2
    assert "1 case: 0 passed, 1 skipped (unsupported: a kernel for another cell), 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("fn, says", [("unsupported_on_second_call", "after supporting the first call"),
                                      ("bad_declaration", "supports() must return True")])
def test_an_inconsistent_or_broken_declaration_fails(fn, says):
    result = check(f"partial_candidates:{fn}", [parse_case(NAMES[0])], isolate=False)
    assert result.exit_status == 1 and says in result.results[0].error


def test_a_wrong_answer_on_a_supported_case_still_fails():
    result = check("partial_candidates:one_layer_wrong_elsewhere", LSTMS, isolate=False)
    assert result.exit_status == 1 and result.failures and result.skipped
    assert all(r.case.num_layers == 1 and not r.report["hx"].ok for r in result.failures)


def test_unsupported_is_importable_from_oracle_and_a_not_implemented_error():
    assert issubclass(oracle.Unsupported, NotImplementedError)


# ------------------------------------------------------------------ reports, shards and merge

@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    assert main(["export", str(folder), "-k", "module/LSTM/L1 and T5-B3 and float64 and up-both"]) == 0
    return folder


def test_check_prints_a_group_summary_aligned_and_json_per_tensor(golden, capsys, tmp_path):
    out_json = tmp_path / "c.json"
    assert main(["check", str(golden), "--candidate", "manual:module_gradients", "--in-process",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^LSTM +float64 +(\d+) +\1 +0 +0 +\d\.\de-\d\d$", out, re.M), out
    data = json.loads(out_json.read_text())
    assert data["command"] == "check" and data["ok"] and data["shard"] is None
    tensors = {t["tensor"]: t for t in data["cases"][0]["reports"]["candidate"]}
    assert tensors["hx"]["status"] == "judged" and tensors["hx"]["error"] <= tensors["hx"]["bound"]
    assert tensors["cx"]["status"] == "judged"


def test_check_v_shows_passing_reports_aligned_and_absent_optionals(golden, capsys):
    assert main(["check", str(golden), "--candidate", "partial_candidates:required_only", "--in-process", "-v"]) == 0
    out = capsys.readouterr().out
    assert "not given (not checked)" in out and "h_l0" in out
    first = out.split(": pass\n")[1]  # the first case's report
    lines = [ln for ln in first.splitlines() if re.match(r"  (weight_ih_l0|hx|h_l0) ", ln)]
    assert len(lines) == 3 and len({ln.index(" pass ") if " pass " in ln else ln.index(" not given") for ln in lines}) \
        == 1, lines  # columns aligned


@SLOW
def test_four_shards_merged_equal_the_whole_run(golden, capsys, tmp_path):
    whole = tmp_path / "whole.json"
    assert main(["check", str(golden), "--candidate", "partial_candidates:declares_no_projection",
                 "--json", str(whole)]) == 0
    whole_out = capsys.readouterr().out
    for i in range(1, 5):
        code = main(["check", str(golden), "--candidate", "partial_candidates:declares_no_projection",
                     "--shard", f"{i}/4", "--json", str(tmp_path / f"s{i}.json")])
        assert code in (0, 2)  # a shard may hold only skipped cases
    capsys.readouterr()
    merged = tmp_path / "merged.json"
    assert main(["merge", *(str(tmp_path / f"s{i}.json") for i in range(1, 5)), "--json", str(merged)]) == 0
    merged_out = capsys.readouterr().out
    assert merged_out.splitlines() == whole_out.splitlines()[-len(merged_out.splitlines()):], (merged_out, whole_out)
    assert merged_out.splitlines()[-1].startswith(f"{len(json.loads(whole.read_text())['cases'])} cases: ")
    by_name = lambda doc: {r["name"]: (r["status"], r["worst"]) for r in doc["cases"]}  # noqa: E731
    assert by_name(json.loads(merged.read_text())) == by_name(json.loads(whole.read_text()))


def test_merge_refuses_missing_or_mixed_shards(tmp_path, capsys):
    def write(name, **doc):
        (tmp_path / name).write_text(json.dumps({"command": "check", "cases": [], **doc}))
        return str(tmp_path / name)

    a, b = write("a.json", shard="1/3"), write("b.json", shard="2/3")
    assert main(["merge", a, b]) == 2 and "shards missing [3]" in capsys.readouterr().err
    c = write("c.json", shard="1/2")
    assert main(["merge", a, c]) == 2 and "different numbers of parts" in capsys.readouterr().err
    d = write("d.json", shard="1/1", cases=[{"name": "x"}])
    assert main(["merge", d]) == 2 and "a case record lacks" in capsys.readouterr().err
    (tmp_path / "e.json").write_text("{")
    assert main(["merge", str(tmp_path / "e.json")]) == 2 and "not a readable JSON" in capsys.readouterr().err


def test_a_word_that_is_a_built_in_part_is_a_part_in_any_set():
    bf16 = [parse_case("module/GRU/L1/T5-B3-I3-H4/lengths-mixed/up-both/bfloat16")]
    assert select(bf16, "float16") == [] and select(bf16, "bfloat16") == bf16
    assert select(bf16, "float") == bf16  # no part of any name: a substring


def test_merged_fuzz_shards_pass_when_none_failed_and_refuse_other_setups(tmp_path, capsys):
    def write(name, judged, setup="a", cases=()):
        doc = {"command": "fuzz", "shard": name, "judged": judged, "setup": {"candidate": setup}, "cases": list(cases)}
        (tmp_path / f"{name[0]}.json").write_text(json.dumps(doc))
        return str(tmp_path / f"{name[0]}.json")

    assert main(["merge", write("1/2", 5), write("2/2", 0)]) == 0
    assert "fuzz: 5 examples judged over 2 shards; 0 failing: none" in capsys.readouterr().out
    assert main(["merge", write("1/2", 0), write("2/2", 0)]) == 2  # nothing judged anywhere
    assert main(["merge", write("1/2", 5), write("2/2", 5, setup="b")]) == 2
    assert "different setups" in capsys.readouterr().err


def test_a_passing_case_is_reported_by_its_first_call():
    result = check("manual:module_gradients", [parse_case(NAMES[0])], isolate=False)
    assert result.ok and "call 2 of 2" not in str(result.results[0])


def test_k_and_case_together_are_a_usage_error(capsys):
    assert main(["verify", "--case", NAMES[0], "-k", "float32"]) == 2
    assert "-k and --case both select cases" in capsys.readouterr().err


def test_keys_of_another_layout_are_noted_and_a_signature_mismatch_has_a_remedy():
    onnx = check("manual:module_gradients", [parse_case(NAMES[0])], isolate=False, layout="onnx")
    assert not onnx.ok and any("in the other layout?" in n for n in onnx.results[0].report.notes)
    seed = check("manual:module_gradients", [parse_case(NAMES[4])], isolate=False)
    assert "select one kind, -k module, -k recurrence or -k 'not module and not recurrence'" in seed.results[0].error


def test_a_shard_that_holds_none_of_the_selection_passes_and_merges(tmp_path, capsys):
    name = NAMES[3]
    empty = [i for i in range(1, 5) if not in_shard(name, (i, 4))]
    for i in range(1, 5):
        out = tmp_path / f"v{i}.json"
        assert main(["verify", "--case", name, "--shard", f"{i}/4", "--json", str(out), "--jobs", "1"]) == 0
        assert json.loads(out.read_text())["shard"] == f"{i}/4"
        out = tmp_path / f"c{i}.json"
        assert main(["check", "--candidate", "manual:module_gradients", "--in-process", "--case", name,
                     "--shard", f"{i}/4", "--json", str(out)]) == 0
    assert f"shard {empty[0]}/4 holds none of the selection" in capsys.readouterr().out
    for kind in "vc":
        assert main(["merge", *(str(tmp_path / f"{kind}{i}.json") for i in range(1, 5))]) == 0
        assert "1 case: 1 passed, 0 failed" in capsys.readouterr().out


def test_num_gpus_without_ray_is_a_usage_error(capsys):
    assert main(["check", "--candidate", "manual:module_gradients", "--case", NAMES[0], "--num-gpus", "1"]) == 2
    assert "add --ray" in capsys.readouterr().err


@pytest.mark.parametrize("up", ["hnonly", "cnonly", "outhn", "outcn"])
def test_every_subset_of_an_lstm_s_outputs_drives_a_case_and_a_golden_file(up, tmp_path):
    import manual
    from oracle.cases.module import DRIVES

    name = f"module/LSTM/L2-bi/T5-B3-I3-H4/lengths-mixed/up-{up}/float64"
    case = parse_case(name)
    given = {k for k in ("grad_output", "grad_hn", "grad_cn") if case.inputs()[k] is not None}
    assert given == {f"grad_{d}" for d in DRIVES[up]}
    assert main(["export", str(tmp_path), "--case", name]) == 0
    assert oracle.assert_gradients(manual.module_gradients, tmp_path / f"{case.file_stem}.safetensors").ok
    with pytest.raises(ValueError, match="has no c"):
        parse_case(name.replace("LSTM", "GRU"))
