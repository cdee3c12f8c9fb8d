"""Golden files: round trip, candidates' gradient files, and hostile files refused with exit code 2."""

import io
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import manual
from oracle.cases.seed import Case
from oracle.cli import main
from oracle.files.golden import load_golden

CASE = Case("many-to-many", "tanh", "mse", T=4, B=2, D=3, H=4, O=2)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    assert main(["export", str(folder), "--case", CASE.name]) == 0
    return folder


@pytest.fixture
def one(golden, tmp_path):
    """A private copy of the golden file, to spoil."""
    (tmp_path / "g").mkdir()
    path = tmp_path / "g" / f"{CASE.file_stem}.safetensors"
    path.write_bytes((golden / path.name).read_bytes())
    return path


def manual_grads(path):
    case, inputs, _, _ = load_golden(path)
    return manual.gradients(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **case.kwargs)


def header_of(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def with_header(path, header, data):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_round_trip_keeps_everything(golden):
    case, inputs, truth, meta = load_golden(golden / f"{CASE.file_stem}.safetensors")
    assert case == CASE
    fresh = CASE.inputs()
    np.testing.assert_array_equal(inputs["x"], fresh["x"])
    np.testing.assert_array_equal(inputs["params"]["Whh"], fresh["params"]["Whh"])
    assert set(truth.grads) == set(manual.GRAD_NAMES) and truth.grads["h"].shape == (4, 2, 4)
    assert meta["schema"] == 2 and meta["kind"] == "seed" and meta["seed"] == CASE.seed and meta["name"] == CASE.name
    assert {"numpy", "torch", "blas", "python"} <= set(meta["versions"])
    assert "C" in meta["tolerance"] and len(meta["sha256"]) == 8 + 3 * 9
    assert "finite differences" in meta["checked"]


def test_check_manual_passes(golden, capsys):
    assert main(["check", str(golden), "--candidate", "manual:gradients"]) == 0
    assert "1 case: 1 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_check_gradient_files(golden, tmp_path, fmt, capsys):
    g = {k: np.asarray(v) for k, v in manual_grads(golden / f"{CASE.file_stem}.safetensors").items()}
    path = tmp_path / f"{CASE.file_stem}.{fmt}"
    if fmt == "npz":
        np.savez(path, **g)
    else:
        from safetensors.numpy import save_file
        save_file({k: np.ascontiguousarray(v) for k, v in g.items()}, str(path))
    assert main(["check", str(golden), "--grads", str(tmp_path)]) == 0
    g["z"][2, 1, 3] += 0.5  # one wrong element at t = 3
    path.unlink()
    np.savez(tmp_path / f"{CASE.file_stem}.npz", **g)
    assert main(["check", str(golden), "--grads", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "z[t=3, b=1, i=3]" in out and "1/32 mismatched" in out


def test_gradient_file_missing_is_a_failure(golden, tmp_path, capsys):
    assert main(["check", str(golden), "--grads", str(tmp_path)]) == 1
    assert "no gradient file" in capsys.readouterr().out


# ------------------------------------------------------------------ hostile golden files

def refused(argv, capsys, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "refused" in err or "error" in err, err
    for w in words:
        assert w in err, err
    return err


def test_symlink_refused(one, tmp_path, capsys):
    real = tmp_path / "elsewhere.safetensors"
    one.rename(real)
    os.symlink(real, one)  # the folder holds only a link to a valid file
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "symbolic link")


def test_truncated_file_refused(one, capsys):
    one.write_bytes(one.read_bytes()[:-100])
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "offsets")


def test_header_overrun_refused(one, capsys):
    raw = one.read_bytes()
    one.write_bytes(struct.pack("<Q", 10**12) + raw[8:])
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "header length")


def test_header_not_json_refused(one, capsys):
    raw = one.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    one.write_bytes(raw[:8] + b"\x80" * n + raw[8 + n:])
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "not JSON")


def test_huge_declared_shape_refused(one, capsys):
    header, data = header_of(one)
    header["grads.Whh"]["shape"] = [1_000_000, 1_000_000]
    with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "grads.Whh")


def test_huge_case_in_metadata_refused(one, capsys):
    header, data = header_of(one)
    info = json.loads(header["__metadata__"]["bptt"])
    info["case"]["T"] = 10**6
    header["__metadata__"]["bptt"] = json.dumps(info)
    with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys)


def test_shape_not_matching_case_refused(one, capsys):
    header, data = header_of(one)
    info = json.loads(header["__metadata__"]["bptt"])
    info["case"]["H"] = 5
    header["__metadata__"]["bptt"] = json.dumps(info)
    with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "needs")


@pytest.mark.parametrize("dtype", ["C64", "U8", "O"])
def test_unexpected_dtype_refused(one, capsys, dtype):
    header, data = header_of(one)
    header["grads.bh"]["dtype"] = dtype
    with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "dtype")


def test_tampered_data_refused(one, capsys):
    raw = bytearray(one.read_bytes())
    raw[-3] ^= 0xFF
    one.write_bytes(bytes(raw))
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "SHA-256")


def test_non_finite_truth_refused(one, capsys):
    from safetensors.numpy import load_file, save_file
    t = load_file(str(one))
    header, _ = header_of(one)
    t["grads.by"] = np.array([np.nan, 0.0])
    save_file(t, str(one), metadata=header["__metadata__"])
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys)


def test_pickle_and_pt_files_are_never_read(golden, tmp_path, capsys):
    (tmp_path / f"{CASE.file_stem}.pt").write_bytes(pickle.dumps({"Wxh": 1}))
    assert main(["check", str(golden), "--grads", str(tmp_path)]) == 1  # not found, not loaded
    assert "no gradient file" in capsys.readouterr().out


# ------------------------------------------------------------------ hostile candidate gradient files

def grads_refused(golden, tmp_path, capsys, *words):
    return refused(["check", str(golden), "--grads", str(tmp_path)], capsys, *words)


def test_pickle_carrying_npz_refused(golden, tmp_path, capsys):
    g = {k: np.asarray(v) for k, v in manual_grads(golden / f"{CASE.file_stem}.safetensors").items()}
    g["Wxh"] = np.array([{"evil": "os.system"}] * 12, dtype=object).reshape(4, 3)
    np.savez(tmp_path / f"{CASE.file_stem}.npz", **g)  # numpy pickles object arrays into the member
    grads_refused(golden, tmp_path, capsys, "Wxh", "object")


def test_unexpected_member_refused(golden, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / f"{CASE.file_stem}.npz", "w") as z:
        z.writestr("payload.pkl", pickle.dumps(print))
    grads_refused(golden, tmp_path, capsys, "payload.pkl")


def test_zip_bomb_refused(golden, tmp_path, capsys):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (4, 3)})
    with zipfile.ZipFile(tmp_path / f"{CASE.file_stem}.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Wxh.npy", buf.getvalue() + bytes(40 * 2**20))  # 40 MiB of zeros → ~40 KiB
    grads_refused(golden, tmp_path, capsys, "zip bomb")


def test_member_past_size_limit_refused(golden, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / f"{CASE.file_stem}.npz", "w", zipfile.ZIP_STORED) as z:
        z.writestr("Wxh.npy", bytes(65 * 2**20))
    grads_refused(golden, tmp_path, capsys, "limit")


def test_npz_wrong_shape_refused(golden, tmp_path, capsys):
    np.savez(tmp_path / f"{CASE.file_stem}.npz", Wxh=np.zeros((3, 4)))
    grads_refused(golden, tmp_path, capsys, "Wxh", "(3, 4)", "(4, 3)")


def test_npz_integer_dtype_refused(golden, tmp_path, capsys):
    np.savez(tmp_path / f"{CASE.file_stem}.npz", Wxh=np.zeros((4, 3), dtype=np.int64))
    grads_refused(golden, tmp_path, capsys, "int64")


def test_npz_not_a_zip_refused(golden, tmp_path, capsys):
    (tmp_path / f"{CASE.file_stem}.npz").write_bytes(pickle.dumps({"Wxh": 1}))
    grads_refused(golden, tmp_path, capsys, "not a zip")


def test_safetensors_grads_unexpected_name_refused(golden, tmp_path, capsys):
    from safetensors.numpy import save_file
    save_file({"Wxh": np.zeros((4, 3)), "secret": np.zeros(2)}, str(tmp_path / f"{CASE.file_stem}.safetensors"))
    grads_refused(golden, tmp_path, capsys, "secret")


def test_safetensors_grads_symlink_refused(golden, tmp_path, capsys):
    real = tmp_path / "real.safetensors"
    from safetensors.numpy import save_file
    save_file({"Wxh": np.zeros((4, 3))}, str(real))
    os.symlink(real, tmp_path / f"{CASE.file_stem}.safetensors")
    grads_refused(golden, tmp_path, capsys, "symbolic link")


def test_npz_with_unsupported_compression_refused(golden, tmp_path, capsys):
    path = tmp_path / f"{CASE.file_stem}.npz"
    np.savez(path, Wxh=np.zeros((4, 3)))
    raw = bytearray(path.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the compression method to 99 (AES), unsupported
        i = raw.find(sig)
        off = 8 if sig == b"PK\x03\x04" else 10
        raw[i + off:i + off + 2] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    grads_refused(golden, tmp_path, capsys, "unreadable archive")


def test_npz_truncated_member_refused(golden, tmp_path, capsys):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (4, 3)})
    with zipfile.ZipFile(tmp_path / f"{CASE.file_stem}.npz", "w") as z:
        z.writestr("Wxh.npy", buf.getvalue() + bytes(16))  # 16 of 96 data bytes
    grads_refused(golden, tmp_path, capsys, "truncated")


# ------------------------------------------------------------------ parse errors are bounded, and reach their guard

def resave(path, tensors, info):
    """Write ``tensors`` with metadata ``info`` whose SHA-256s match the data (so later guards are reached)."""
    from safetensors.numpy import save_file

    from oracle.files.readers import sha256
    info = dict(info, sha256={k: sha256(v) for k, v in tensors.items()})
    save_file(tensors, str(path), metadata={"bptt": json.dumps(info)})


def test_non_finite_truth_with_matching_hashes_is_refused_by_the_finiteness_guard(one, capsys):
    from safetensors.numpy import load_file
    t = load_file(str(one))
    header, _ = header_of(one)
    t["grads.by"] = np.array([np.nan, 0.0])
    resave(one, t, json.loads(header["__metadata__"]["bptt"]))
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "grads.by", "NaN or Inf")


@pytest.mark.parametrize("where", ["header", "metadata"])
def test_deeply_nested_json_is_refused_without_recursion(one, capsys, where):
    header, data = header_of(one)
    deep = "[" * 100_000 + "]" * 100_000
    if where == "header":
        raw = json.dumps(header)[:-1] + ', "deep": ' + deep + "}"
        h = raw.encode()
        one.write_bytes(struct.pack("<Q", len(h)) + h + data)
    else:
        header["__metadata__"]["bptt"] = header["__metadata__"]["bptt"][:-1] + ', "deep": ' + deep + "}"
        with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "nests")


@pytest.mark.parametrize("where", ["header", "metadata"])
def test_huge_integer_is_refused(one, capsys, where):
    header, data = header_of(one)
    big = "9" * 5000
    if where == "header":
        h = json.dumps(header).replace('"shape": [4]', '"shape": [' + big + "]", 1).encode()
        assert big.encode() in h
        one.write_bytes(struct.pack("<Q", len(h)) + h + data)
    else:
        header["__metadata__"]["bptt"] = header["__metadata__"]["bptt"].replace('"T": 4', '"T": ' + big)
        assert big in header["__metadata__"]["bptt"]
        with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "5000 digits")


def test_renamed_golden_file_is_refused(one, capsys):
    one.rename(one.with_name("many-to-many__tanh__mse__T9-B2-D3-H4-O2__float64.safetensors"))
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "name it", CASE.file_stem)


def test_golden_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["export", str(tmp_path), "--case", CASE.name]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / f"{CASE.file_stem}.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_pt_file_is_named_as_never_read(golden, tmp_path, capsys):
    (tmp_path / f"{CASE.file_stem}.pt").write_bytes(pickle.dumps({"Wxh": 1}))
    assert main(["check", str(golden), "--grads", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{CASE.file_stem}.pt is never read" in out and "can run code" in out


def test_missing_bptt_metadata_is_refused(one, capsys):
    from safetensors.numpy import load_file, save_file
    save_file(load_file(str(one)), str(one))
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "metadata 'bptt' is missing")


def test_unterminated_strings_in_a_header_are_refused_quickly(one, capsys):
    import time
    h = b'"' + b'\\"' * 400_000  # quadratic for a backtracking string regex; linear for json's scanner
    one.write_bytes(struct.pack("<Q", len(h)) + h)
    start = time.monotonic()
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "not JSON")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("schema", [True, 4, "2", None])
def test_unknown_schema_is_refused_with_a_remedy(one, capsys, schema):
    from safetensors.numpy import load_file
    header, _ = header_of(one)
    info = json.loads(header["__metadata__"]["bptt"])
    info["schema"] = schema
    resave(one, load_file(str(one)), info)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "schema", "pip install -U")


def test_schema_1_files_are_still_read(one, capsys):
    from safetensors.numpy import load_file
    header, _ = header_of(one)
    info = json.loads(header["__metadata__"]["bptt"])
    info["schema"] = 1
    del info["kind"]
    resave(one, load_file(str(one)), info)
    assert main(["check", str(one.parent), "--candidate", "manual:gradients"]) == 0


def test_sha256_not_a_map_is_refused(one, capsys):
    header, data = header_of(one)
    info = json.loads(header["__metadata__"]["bptt"])
    info["sha256"] = ["x"]
    header["__metadata__"]["bptt"] = json.dumps(info)
    with_header(one, header, data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "sha256")


def test_inputs_that_are_not_a_valid_case_are_refused(tmp_path, capsys):
    from safetensors.numpy import load_file
    for name, edit, words in [
        ("many-to-one/tanh/cross_entropy/T3-B2-D3-H4-O3/float64", lambda t: t["inputs.target"].__setitem__(0, 99),
         "target classes"),
        ("many-to-one/tanh/mse/T3-B2-D3-H4-O2/float32", lambda t: t["params.Whh"].__setitem__((0, 0), 1e300),
         "not float32 numbers"),
        ("module/GRU/L1/T3-B2-I2-H3/lengths-full/up-both/bfloat16",  # a float32 number, not a bfloat16 one
         lambda t: t["state_dict.weight_hh_l0"].__setitem__((0, 0), 1 + 2**-10), "not bfloat16 numbers"),
        ("module/GRU/L1/T3-B2-I2-H3/lengths-full/up-both/float16",
         lambda t: t["inputs.input"].__setitem__((0, 0, 0), 1 + 2**-12), "not float16 numbers"),
    ]:
        folder = tmp_path / name.replace("/", "_")
        assert main(["export", str(folder), "--case", name]) == 0
        path = next(folder.glob("*.safetensors"))
        header, _ = header_of(path)
        t = load_file(str(path))
        edit(t)
        resave(path, t, json.loads(header["__metadata__"]["bptt"]))
        refused(["check", str(folder), "--candidate", "manual:gradients"], capsys, words)


def test_module_golden_round_trip_and_grads_files(tmp_path, capsys):
    from oracle.cases.module import ModuleCase, run_module
    name = "module/RNN_RELU/L2-bi-bf/T4-B3-I2-H3/lengths-mixed/up-both/float64"
    assert main(["export", str(tmp_path / "g"), "--case", name]) == 0
    case, inputs, truth, meta = load_golden(tmp_path / "g" / f"{ModuleCase.parse(name).file_stem}.safetensors")
    assert meta["schema"] == 2 and meta["kind"] == "module" and case == ModuleCase.parse(name)
    assert inputs["lengths"] == [1, 4, 2] and "finite differences" in meta["checked"]
    assert main(["check", str(tmp_path / "g"), "--candidate", "manual:module_gradients"]) == 0
    g = run_module(manual.module_gradients, inputs)
    (tmp_path / "out").mkdir()
    np.savez(tmp_path / "out" / f"{case.file_stem}.npz", **g)
    assert main(["check", str(tmp_path / "g"), "--grads", str(tmp_path / "out")]) == 0
    g["weight_hh_l1_reverse"] = g["weight_hh_l1_reverse"] * 1.01
    np.savez(tmp_path / "out" / f"{case.file_stem}.npz", **g)
    assert main(["check", str(tmp_path / "g"), "--grads", str(tmp_path / "out")]) == 1
    assert "weight_hh_l1_reverse FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["module/LSTM/L2-bi-p2/T4-B3-I2-H3/lengths-mixed/up-both/float32",
                                  "module/GRU/L1-bf-paper/T4-B3-I2-H3/lengths-mixed/up-hn/float64"])
def test_lstm_and_gru_golden_round_trip(name, tmp_path, capsys):
    from oracle.cases.module import ModuleCase
    case = ModuleCase.parse(name)
    assert main(["export", str(tmp_path), "--case", name]) == 0
    got_case, inputs, truth, meta = load_golden(tmp_path / f"{case.file_stem}.safetensors")
    assert got_case == case and meta["case"]["proj_size"] == case.proj_size
    assert meta["case"]["linear_before_reset"] == case.linear_before_reset
    if case.mode == "LSTM":
        assert isinstance(inputs["hx"], tuple) and inputs["grad_cn"] is not None and "cx" in truth.grads
    assert main(["check", str(tmp_path), "--candidate", "manual:module_gradients"]) == 0


def test_a_broken_gradient_file_gets_a_remedy_for_gradient_files(golden, tmp_path, capsys):
    """A candidate's file is not written by `bptt export`: its remedy says how gradient files are written."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / f"{CASE.file_stem}.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}")
    err = refused(["check", str(golden), "--grads", str(tmp_path / "v")], capsys, "safetensors.numpy.save_file")
    assert "bptt export" not in err, err


def test_a_header_key_twice_is_refused(one, capsys):
    """Duplicate JSON keys: one reader takes the first, another the last; a golden file has one meaning."""
    header, data = header_of(one)
    raw = json.dumps(header)
    name = next(k for k in header if k != "__metadata__")
    dup = raw[:-1] + ", " + json.dumps(name) + ": " + json.dumps(header[name]) + "}"
    h = dup.encode()
    one.write_bytes(struct.pack("<Q", len(h)) + h + data)
    refused(["check", str(one.parent), "--candidate", "manual:gradients"], capsys, "appears twice")


def test_npz_member_twice_is_refused(golden, tmp_path, capsys):
    g = manual_grads(golden / f"{CASE.file_stem}.safetensors")
    (tmp_path / "v").mkdir()
    with zipfile.ZipFile(tmp_path / "v" / f"{CASE.file_stem}.npz", "w") as z:
        for name in [*g, "Whh"]:
            buf = io.BytesIO()
            np.save(buf, g[name] * (2 if name == "Whh" and "Whh.npy" in z.namelist() else 1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: the point of the test
                z.writestr(f"{name}.npy", buf.getvalue())
    refused(["check", str(golden), "--grads", str(tmp_path / "v")], capsys, "'Whh.npy' appears twice")


# ---------------------------------------------------------------- files written before the redesign

BEFORE = Path(__file__).parent / "data" / "before-issue-15"  # exported by e8f03a2, the commit before it


@pytest.mark.parametrize("layout, schema", [("torch", 2), ("onnx", 3)])
def test_golden_files_written_before_the_redesign_still_load_and_check(layout, schema):
    """Schema 2 (torch's layout) and 3 (ONNX's) files, as the project wrote them before the case protocol, the
    cell rows and the rooms: they load, their stored truth agrees with the one recomputed now, and manual passes."""
    from safetensors import safe_open

    from oracle import check

    folder = BEFORE / layout
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "np") as f:
            assert json.loads(f.metadata()["bptt"])["schema"] == schema
        load_golden(path)
    assert check(manual.module_gradients, "module/", golden=folder, isolate=False, layout="torch").ok
    if layout == "torch":
        assert check(manual.gradients, "many-to-many/", golden=folder, isolate=False).ok


@pytest.mark.parametrize("field, value, words", [("scale", 0, "case.scale 0"), ("scale", 10**6, "case.scale"),
                                                 ("input_grad", "no", "input_grad"), ("hx_grad", 1, "hx_grad"),
                                                 ("dtype", "float8", "case.dtype")])
def test_fuzz_fields_and_dtypes_in_metadata_are_checked(tmp_path, capsys, field, value, words):
    from safetensors.numpy import load_file
    name = "module/GRU/L1-sat4-nohxgrad/T3-B2-I2-H3/lengths-full/up-both/float64"
    assert main(["export", str(tmp_path), "--case", name]) == 0
    path = next(tmp_path.glob("*.safetensors"))
    header, _ = header_of(path)
    info = json.loads(header["__metadata__"]["bptt"])
    assert info["case"]["scale"] == 4 and info["case"]["hx_grad"] is False
    info["case"][field] = value
    resave(path, load_file(str(path)), info)
    refused(["check", str(tmp_path), "--candidate", "manual:module_gradients"], capsys, words)


# ------------------------------------------------------------------ the matrix-state recurrences' golden files

RECURRENCE = "recurrence/gated_delta_rule-betav-gv2-l2norm/T6-B2-H1-K2-V3/init-nograd/seqs-packed/up-both/float64"


@pytest.fixture(scope="module")
def recurrence_golden(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recurrence")
    assert main(["export", str(folder), "--case", RECURRENCE]) == 0
    return folder


def test_recurrence_golden_round_trip_and_grads_files(recurrence_golden, tmp_path, capsys):
    from oracle.cases.recurrence import CONVENTION, RecurrenceCase, run_recurrence
    case = RecurrenceCase.parse(RECURRENCE)
    got, inputs, truth, meta = load_golden(recurrence_golden / f"{case.file_stem}.safetensors")
    assert got == case and meta["kind"] == "recurrence" and inputs["cu_seqlens"].tolist() == [0, 1, 6]
    assert meta["case"]["eps"] == 1e-6 and meta["case"]["convention"] == CONVENTION
    assert "finite differences" in meta["checked"] and set(truth.grads) == {"q", "k", "v", "g", "beta",
                                                                             "initial_state", "S"}
    g = run_recurrence(manual.recurrence_gradients, inputs, case.wrt)
    assert "initial_state" not in g  # init-nograd: not asked
    (tmp_path / "out").mkdir()
    np.savez(tmp_path / "out" / f"{case.file_stem}.npz", **g)
    assert main(["check", str(recurrence_golden), "--grads", str(tmp_path / "out")]) == 0
    g["beta"][0, 2, 1, 0] += 1e-3
    np.savez(tmp_path / "out" / f"{case.file_stem}.npz", **g)
    assert main(["check", str(recurrence_golden), "--grads", str(tmp_path / "out")]) == 1
    assert re.search(r"first mismatch beta\[t=3, b=0, head=1, 0\]", capsys.readouterr().out)


@pytest.mark.parametrize("edit, words", [
    (lambda t, info: t["inputs.cu_seqlens"].__setitem__(1, 2), ["cu_seqlens is [0, 2, 6]", "[0, 1, 6]"]),
    (lambda t, info: t["inputs.cu_seqlens"].__setitem__(2, 9), ["cu_seqlens must end at most at T"]),
    (lambda t, info: info["case"].__setitem__("eps", 1e-5), ["eps 1e-05", "this version computes"]),
    (lambda t, info: info["case"].__setitem__("convention", "gate after"), ["convention 'gate after'"]),
    (lambda t, info: info["case"].__setitem__("groups", 0), ["groups 0"]),
], ids=["cu_seqlens-not-the-case's", "cu_seqlens-past-T", "another-eps", "another-convention", "no-groups"])
def test_a_recurrence_file_that_is_not_its_case_is_refused(recurrence_golden, tmp_path, capsys, edit, words):
    from safetensors.numpy import load_file
    path = tmp_path / next(recurrence_golden.glob("*.safetensors")).name
    path.write_bytes((recurrence_golden / path.name).read_bytes())
    header, _ = header_of(path)
    t, info = load_file(str(path)), json.loads(header["__metadata__"]["bptt"])
    edit(t, info)
    resave(path, t, info)
    refused(["check", str(tmp_path), "--candidate", "manual:recurrence_gradients"], capsys, *words)
