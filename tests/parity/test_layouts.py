"""ONNX's layout (oracle.layouts): exact both ways, proven by ONNX's own operators, and golden cases in it.

The mapping is checked against two implementations of ONNX's RNN, LSTM and
GRU operators that share no code with this project: the ``onnx`` package's
reference evaluator (float64, ``layout`` 0 and 1) and ONNX Runtime (float32,
``sequence_lens``, which the reference evaluator ignores). Each runs the
tensors ``to_onnx`` makes, and its Y and Y_h must be ``manual.module_forward``'s
output and h_n (themselves equal to nn.RNN / nn.LSTM / nn.GRU, test_module.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import manual
from contract.spec import config_from, grad_shapes, param_shapes
from oracle.cases.module import ModuleCase
from oracle.checker.run import check, check_files
from oracle.cli import main
from oracle.files.golden import load_golden
from oracle.layouts import LayoutError, from_onnx, to_onnx

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU-paper")
OP = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}
T, B = 5, 3


def config(mode: str, *, bf=False, bidir=True, layers=2, bias=True):
    c = {"mode": mode.split("-")[0], "input_size": 3, "hidden_size": 4, "num_layers": layers,
         "bidirectional": bidir, "batch_first": bf, "bias": bias}
    if mode == "GRU-paper":
        c["linear_before_reset"] = False
    return c


def onnx_run(engine: str, c, t: dict, seq):
    """Layer by layer through ONNX's operator: (output as torch's module gives it, h_n)."""
    from onnx import TensorProto, helper

    float_t = TensorProto.DOUBLE if engine == "reference" else TensorProto.FLOAT
    X, hn = t["X"], []
    for k in range(c.num_layers):
        names = ["X", f"W_l{k}", f"R_l{k}", f"B_l{k}" if c.bias else "", "sequence_lens" if seq is not None else "",
                 f"initial_h_l{k}"] + ([f"initial_c_l{k}"] if c.mode == "LSTM" else [])
        feeds = {n: (X if n == "X" else t[n]) for n in names if n and n != "sequence_lens"}
        feeds = {n: v.astype(np.float64 if engine == "reference" else np.float32) for n, v in feeds.items()}
        if seq is not None:
            feeds["sequence_lens"] = np.asarray(seq, np.int32)
        attrs = {"hidden_size": c.hidden_size, "direction": "bidirectional" if c.bidirectional else "forward"}
        if c.batch_first:
            attrs["layout"] = 1
        if c.mode.startswith("RNN"):
            attrs["activations"] = ["Tanh" if c.mode == "RNN_TANH" else "Relu"] * c.dirs
        if c.mode == "GRU":
            attrs["linear_before_reset"] = int(c.linear_before_reset)
        outs = ["Y", "Y_h"] + (["Y_c"] if c.mode == "LSTM" else [])
        graph = helper.make_graph(
            [helper.make_node(OP[c.mode], names, outs, **attrs)], "layer",
            [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else float_t, v.shape)
             for n, v in feeds.items()],
            [helper.make_tensor_value_info(n, float_t, None) for n in outs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        model.ir_version = 8
        if engine == "reference":
            from onnx.reference import ReferenceEvaluator

            Y, Y_h, *_ = ReferenceEvaluator(model).run(None, feeds)
        else:
            import onnxruntime

            s = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            Y, Y_h, *_ = s.run(None, feeds)
        hn.append(Y_h.transpose(1, 0, 2) if c.batch_first else Y_h)
        # Y [T, dirs, B, H] (layout 1: [B, T, dirs, H]) → the next layer's X, torch's output
        X = Y.reshape(*Y.shape[:2], -1) if c.batch_first else Y.transpose(0, 2, 1, 3).reshape(T, B, -1)
    return X, np.concatenate(hn)


def inputs_for(cfg: dict, seed=1):
    c = config_from(cfg)
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(size=s) * 0.5 for k, s in param_shapes(c).items()}
    x = rng.normal(size=(B, T, 3) if c.batch_first else (T, B, 3))
    hx, cx = (rng.normal(size=(c.num_layers * c.dirs, B, 4)) for _ in range(2))
    return c, sd, x, hx, cx


# float64, the reference evaluator: the same arithmetic in another order, so rounding only (values O(1),
# K = I + H + 1 ≤ 9 terms per product, 2 layers × 5 steps): 1e-12 is 4,500 ulps; a gate block read in the
# wrong order changes outputs by O(0.1).
# float32, ONNX Runtime: the same reasoning at float32's eps 6e-8 gives 5e-5 (measured 4e-7).
TOL = {"reference": 1e-12, "onnxruntime": 5e-5}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bf", [False, True], ids=["time-first", "batch-first"])
@pytest.mark.parametrize("engine,lengths", [("reference", None), ("onnxruntime", None), ("onnxruntime", [5, 2, 3])],
                         ids=["reference", "onnxruntime", "onnxruntime-lengths"])
def test_onnx_operators_agree(mode, bf, engine, lengths):
    pytest.importorskip("onnx")
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
        if bf:
            pytest.skip("ONNX Runtime's CPU operators refuse layout = 1; the reference evaluator covers it")
    if engine == "reference" and mode == "RNN_RELU":
        pytest.skip("the onnx reference evaluator knows no Relu activation; ONNX Runtime covers it")
    cfg = config(mode, bf=bf)
    c, sd, x, hx, cx = inputs_for(cfg)
    want = manual.module_forward(cfg, sd, x, (hx, cx) if c.mode == "LSTM" else hx, lengths=lengths)
    t = to_onnx(c, {**sd, "input": x, "hx": hx, **({"cx": cx} if c.mode == "LSTM" else {})})
    out, h_n = onnx_run(engine, c, t, lengths)
    for name, got, w in (("Y", out, want["output"]), ("Y_h", h_n, want["h_n"])):
        assert got.shape == w.shape, f"{name}: shape {got.shape}, torch's {w.shape}"
        err = np.abs(got - w).max()
        assert err <= TOL[engine], f"{name}: ONNX's {OP[c.mode]} differs from manual by {err:.2e}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bf", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_round_trip_is_exact(mode, bf, bias, as_torch):
    c = config_from(config(mode, bf=bf, bias=bias))
    rng = np.random.default_rng(0)
    shapes = {**grad_shapes(c, T, B), "grad_output": (B, T, 8) if bf else (T, B, 8), "grad_hn": (4, B, 4)}
    t = {k: rng.normal(size=s) for k, s in shapes.items()}
    o = to_onnx(c, t)
    assert not set(o) & {"weight_ih_l0", "input", "hx", "grad_output", "grad_hn"}
    back = from_onnx(c, {k: torch.from_numpy(v) for k, v in o.items()} if as_torch else o)
    assert set(back) == set(t)
    for k in t:
        assert np.array_equal(np.asarray(back[k]), t[k]), k


def test_gate_order_is_onnx():
    """Each ONNX block is the torch block the spec names: LSTM i,o,f,c from i,f,g,o; GRU z,r,h from r,z,n."""
    H = 4
    for mode, torch_order, onnx_order in (("LSTM", "ifgo", "iofc"), ("GRU", "rzn", "zrh")):
        c = config_from(config(mode, layers=1, bidir=False))
        W = np.repeat(np.arange(len(torch_order), dtype=float), H)[:, None] * np.ones((1, 3))  # block j holds j
        got = to_onnx(c, {"weight_ih_l0": W, "weight_hh_l0": W[:, :1].repeat(4, 1)})["W_l0"][0, ::H, 0]
        same = {"c": "g", "h": "n"}
        assert [torch_order[int(j)] for j in got] == [same.get(g, g) for g in onnx_order]


def test_shape_errors_name_the_tensor():
    c = config_from(config("LSTM"))
    with pytest.raises(LayoutError, match=r"W_l0 has shape \(16, 3\).*Remedy"):
        from_onnx(c, {"W_l0": np.zeros((16, 3))})
    with pytest.raises(LayoutError, match="initial_h_l.*layers \\[0\\] of 2"):
        from_onnx(c, {"initial_h_l0": np.zeros((2, B, 4))})
    with pytest.raises(LayoutError, match="proj_size = 2.*--layout torch"):
        to_onnx(config_from({**config("LSTM"), "proj_size": 2}), {})
    with pytest.raises(LayoutError, match="layout must be one of.*'ONNX'"):
        from oracle.layouts import check_layout
        check_layout("ONNX")
    with pytest.raises(LayoutError, match="ONNX has no operator for mode 'INDRNN'.*--layout torch"):
        to_onnx(config_from({**config("RNN_TANH"), "mode": "INDRNN"}), {})


# ---------------------------------------------------------------- golden cases in ONNX's layout

NAMES = [f"module/{m}/L2-bi/T5-B3-I3-H4/lengths-mixed/up-both/float64" for m in ("LSTM", "GRU", "RNN_TANH")] + \
        ["module/GRU/L1-bf-paper/T5-B3-I3-H4/lengths-full/up-output/float32"]


def onnx_candidate(config, state_dict, input, hx=None, **kw):
    """manual.module_gradients, answering in ONNX's names."""
    return to_onnx(config_from(config), manual.module_gradients(config, state_dict, input, hx, **kw))


def initial_h_l1_dropped(config, state_dict, input, hx=None, **kw):
    g = onnx_candidate(config, state_dict, input, hx, **kw)
    return {**g, "initial_h_l1": g["initial_h_l1"] * 0} if "initial_h_l1" in g else g


def merged_bias_candidate(config, state_dict, input, hx=None, **kw):
    """As a fused kernel that keeps one bias per gate row answers: B_l{k} [dirs, G·H]."""
    g = onnx_candidate(config, state_dict, input, hx, **kw)
    return {k: (v[:, :v.shape[1] // 2] if k.startswith("B_l") else v) for k, v in g.items()}


def swapped_gates_candidate(config, state_dict, input, hx=None, **kw):
    """Right numbers in torch's gate order under ONNX's names: the classic layout bug."""
    c = config_from(config)
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    o = to_onnx(c, g)
    for k in range(c.num_layers):
        o[f"W_l{k}"] = np.stack([g[f"weight_ih_l{k}{s}"] for s in c.suffixes])
    return o


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    onnx_dir, torch_dir = tmp_path_factory.mktemp("onnx"), tmp_path_factory.mktemp("torch")
    for d, layout in ((onnx_dir, "onnx"), (torch_dir, "torch")):
        argv = ["export", str(d), "--layout", layout] + [a for n in NAMES for a in ("--case", n)]
        assert main(argv) == 0
    return onnx_dir, torch_dir


def test_onnx_golden_holds_onnx_names_and_reads_back_the_same(golden):
    from safetensors.numpy import load_file

    onnx_dir, torch_dir = golden
    for n in NAMES:
        stem = ModuleCase.parse(n).file_stem
        raw = load_file(onnx_dir / f"{stem}.safetensors")
        assert {"params.W_l0", "params.R_l1", "inputs.X", "inputs.grad_Y", "grads.B_l1", "grads.initial_h_l0"} <= \
            set(raw) or "nobias" in n or "L1" in n
        assert not any(k.startswith("state_dict.") for k in raw)
        a, b = load_golden(onnx_dir / f"{stem}.safetensors"), load_golden(torch_dir / f"{stem}.safetensors")
        assert a[0] == b[0] and a[3]["layout"] == "onnx" and "layout" not in b[3]
        for k in ("state_dict", "grads"):
            x, y = (a[1][k] if k == "state_dict" else a[2].grads), (b[1][k] if k == "state_dict" else b[2].grads)
            assert set(x) == set(y) and all(np.array_equal(x[j], y[j]) for j in x), k


@pytest.mark.parametrize("which", ["onnx", "torch"])
def test_onnx_candidate_passes_in_both_folders(golden, which):
    folder = golden[0] if which == "onnx" else golden[1]
    r = check(onnx_candidate, golden=folder, layout="onnx", isolate=False, progress=False)
    assert r.ok and len(r.results) == len(NAMES), str(r)
    assert "read in ONNX's layout" in str(r.results[0].report)


def test_torch_candidate_on_onnx_golden_needs_layout_torch(golden):
    r = check(manual.module_gradients, golden=golden[0], isolate=False, progress=False)
    assert not r.ok and "missing" in str(r)
    assert check(manual.module_gradients, golden=golden[0], layout="torch", isolate=False, progress=False).ok


def test_swapped_gates_fail_named(golden):
    r = check(swapped_gates_candidate, "LSTM", golden=golden[0], isolate=False, progress=False)
    assert not r.ok and "FAIL (W_l0[0], W_l0[1]" in str(r) and re.search(r"R_l0\[0\] +pass", str(r))
    assert "first mismatch W_l0[0, 8, 0] (gate f)" in str(r)  # ONNX's rows and gate letters


def test_merged_bias_judged_as_the_summed_bias(golden):
    r = check(merged_bias_candidate, golden=golden[0], isolate=False, progress=False)
    by = {res.case.name.split("/")[1] + ("-paper" if "paper" in res.case.name else ""): res for res in r.results}
    assert by["LSTM"].ok and by["RNN_TANH"].ok and by["GRU-paper"].ok, str(r)
    gru = by["GRU"]
    assert not gru.ok and "merged bias" in str(gru.report)
    assert {t.name for t in gru.report.failures} == {"B_l0[0] as bias_hh", "B_l0[1] as bias_hh",
                                                      "B_l1[0] as bias_hh", "B_l1[1] as bias_hh"}
    for t in gru.report.failures:  # the rows r multiplies: ONNX's h gate, rows 8 … 11 of the merged [dirs, 12]
        assert re.fullmatch(r"B_l\d\[\d, (8|9|10|11)\] \(gate h\)", t.first), t.first


def test_gradient_files_in_onnx_layout(golden, tmp_path, capsys):
    from safetensors.numpy import save_file

    onnx_dir = golden[0]
    for path in sorted(onnx_dir.glob("*.safetensors")):
        case, inputs, _, _ = load_golden(path)
        g = onnx_candidate(inputs["config"], inputs["state_dict"], inputs["input"], inputs["hx"],
                           grad_output=inputs["grad_output"], grad_hn=inputs["grad_hn"], lengths=inputs["lengths"],
                           grad_cn=inputs.get("grad_cn"))
        save_file({k: np.ascontiguousarray(v) for k, v in g.items()}, tmp_path / path.name)
    assert check_files(onnx_dir, tmp_path, progress=False).ok
    assert main(["check", str(onnx_dir), "--grads", str(tmp_path)]) == 0
    assert main(["check", str(onnx_dir), "--grads", str(tmp_path), "--layout", "torch"]) == 2  # torch names expected
    err = capsys.readouterr().err
    assert "is named in onnx's layout" in err and "Remedy: check it with --layout onnx" in err, err


def test_export_onnx_skips_projections_and_seed_cases_stay(tmp_path, capsys):
    proj = "module/LSTM/L1-p2/T3-B2-I3-H4/lengths-full/up-both/float64"
    assert main(["export", str(tmp_path / "a"), "--layout", "onnx", "--case", proj]) == 2
    assert "no projection" in capsys.readouterr().err
    seed = "many-to-many/tanh/mse/T3-B2-D3-H4-O2/float64"
    assert main(["export", str(tmp_path / "b"), "--layout", "onnx", "--case", seed, "--case", proj]) == 0
    out = capsys.readouterr()
    assert "skipped 1 with no onnx form" in out.out and "proj_size = 2" in out.err
    assert load_golden(next((tmp_path / "b").glob("*.safetensors")))[3].get("layout") is None


def test_layout_onnx_on_a_projection_case_is_a_usage_error(tmp_path, capsys):
    proj = "module/LSTM/L1-p2/T3-B2-I3-H4/lengths-full/up-both/float64"
    assert main(["export", str(tmp_path), "--case", proj]) == 0
    assert main(["check", str(tmp_path), "--candidate", "manual:module_gradients", "--layout", "onnx"]) == 2
    assert "no projection" in capsys.readouterr().err


@pytest.mark.parametrize("meta", [{"layout": "nchw"}, {"layout": "onnx"}, {"layout": ["onnx"]}])
def test_a_file_claiming_another_layout_is_refused(golden, tmp_path, capsys, meta):
    """A torch-layout file relabelled: an unknown layout, or one its tensors do not have, is refused (exit 2)."""
    import json

    from safetensors.numpy import load_file, save_file

    src = next(golden[1].glob("*LSTM*.safetensors"))
    from safetensors import safe_open

    with safe_open(str(src), "numpy") as f:
        info = json.loads(f.metadata()["bptt"])
    info.update({"schema": 3, **meta})
    save_file(load_file(str(src)), str(tmp_path / src.name), metadata={"bptt": json.dumps(info)})
    assert main(["check", str(tmp_path), "--candidate", "manual:module_gradients"]) == 2
    assert "refused" in capsys.readouterr().err


def mismatched_state_candidate(config, state_dict, input, hx=None, **kw):
    """initial_h of layer 1 one batch row short: its layers cannot be joined into hx."""
    g = onnx_candidate(config, state_dict, input, hx, **kw)
    g["initial_h_l1"] = g["initial_h_l1"][:, :-1]
    return g


def transposed_input_candidate(config, state_dict, input, hx=None, **kw):
    """dL/dinput returned time-major for a batch_first case."""
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    g["input"] = g["input"].transpose(1, 0, 2).copy()
    return g


def test_layers_of_different_shapes_fail_the_case_not_the_run(golden):
    r = check(mismatched_state_candidate, golden=golden[0], isolate=False, progress=False)
    assert len(r.results) == len(NAMES) and not r.ok
    assert all("not in ONNX's layout" in res.error and "initial_h_l1" in res.error for res in r.results
               if "L2" in res.case.name)


def test_batch_first_input_shape_is_reported_in_the_callers_layout(tmp_path):
    name = "module/RNN_TANH/L1-bf/T5-B3-I2-H4/lengths-full/up-both/float64"
    assert main(["export", str(tmp_path), "--case", name]) == 0
    r = check(transposed_input_candidate, golden=tmp_path, isolate=False, progress=False)
    assert not r.ok
    assert "shape (5, 3, 2), expected (3, 5, 2) (batch_first" in str(r), str(r)


def test_to_onnx_takes_the_dict_config_and_copies():
    cfg = config("LSTM", bf=True)
    x, hx = np.zeros((B, T, 3)), np.zeros((4, B, 4))
    o = to_onnx(cfg, {"input": x, "hx": hx})
    o["X"][...] = 1
    o["initial_h_l0"][...] = 1
    assert not x.any() and not hx.any()
    assert from_onnx(cfg, o)["hx"].shape == hx.shape


def test_a_state_gradient_is_reported_by_its_onnx_layer_and_direction(golden):
    r = check(initial_h_l1_dropped, "GRU", golden=golden[0], isolate=False, progress=False)
    bad = [res for res in r.results if not res.ok]
    assert bad and {res.case.num_layers for res in bad} == {2}, str(r)
    assert all(res.report.failures[0].name == "initial_h_l*" for res in bad), str(r)
    first = bad[0].report.failures[0].first
    assert re.fullmatch(r"initial_h_l\*\[\d, \d, \d\] in initial_h_l1", first), first


def forget_rows_off(config, state_dict, input, hx=None, **kw):
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    H = config["hidden_size"]
    g["weight_hh_l0"][H:2 * H] *= 1.01
    g["hx"][-1] *= 0
    return g


def test_a_torch_layout_report_names_the_gate_and_a_state_row_its_layer_and_direction():
    r = check(forget_rows_off, "module/LSTM/L2-bi/T5-B3-I3-H4/lengths-full/up-both/float64", isolate=False)
    report = r.results[0].report
    assert report["weight_hh_l0"].first == "weight_hh_l0[4, 0] (gate f)", report["weight_hh_l0"].first
    assert report["hx"].first == "hx[3, 0, 0] (layer 1, reverse)", report["hx"].first
