"""Golden cases on disk: writing them, and reading them (and candidates' files) as data only.

A golden file is one ``.safetensors`` per case, named after the case
(``oracle.cases.Case.file_stem``). Tensors, all float64 but cross-entropy's
int64 target:

    params.Wxh params.Whh params.bh params.Why params.by   the model
    inputs.x inputs.h0 inputs.target                       its inputs
    grads.<name>   the gradient set (Wxh Whh bh Why by h0 x h z), float64 truth
    sens.<name>    its sensitivity, amp.<name> its amplification (oracle.truth)

and one metadata entry ``bptt``: a JSON string with the schema version, the
case, the seed, the tolerance policy, versions, BLAS, device and the SHA-256
of every tensor. Inputs hold the case's numbers rounded to its dtype: cast
them to ``dtype`` before running a candidate.

Reading never runs code: no pickle, no ``.pt``. Before any array is read a
file is refused (``GoldenFileError``, exit code 2 in the CLI) when it is a
symlink or not a regular file, larger than MAX_FILE_BYTES, has a header that
is not JSON or overruns the file, declares a dtype other than a real float
(or int64 for a target), a shape that does not match its case, an unexpected
tensor name, or data offsets that do not tile the file. ``.npz`` candidates
are refused for unexpected members, members that would decompress past
MAX_MEMBER_BYTES or by more than MAX_RATIO, and non-float ``.npy`` headers;
their arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from oracle.cases import Case
from oracle.layouts import LAYOUTS, LayoutError, from_onnx, onnx_names, to_onnx
from oracle.module_cases import ModuleCase
from oracle.truth import Truth

SCHEMA = 2  # 2: a "kind" ("seed" or "module"); 1: the seed model's files before it, still read
SCHEMA_LAYOUT = 3  # 3: a "layout" ("onnx"), written only for ONNX-layout files, so older readers refuse them
READABLE = (1, 2, 3)
MAX_FILE_BYTES = 256 * 2**20  # the largest built-in case is under 1 MiB
MAX_HEADER_BYTES = 2**20
MAX_MEMBER_BYTES = 64 * 2**20
MAX_RATIO = 200  # float64 gradients compress by 1.1–2×; zip bombs by 1000×
MAX_DIM = 1_000_000
MAX_ELEMENTS = 20_000_000
MAX_JSON_DEPTH = 8  # our header and metadata nest 3 deep
MAX_INT_DIGITS = 24  # sizes and offsets; a 5,000-digit integer is an attack on int(), not a size

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64}
FLOAT_ST = {"F64", "F32", "F16", "BF16"}


GOLDEN_REMEDY = "regenerate it with `bptt export`"
GRADS_REMEDY = ("write the gradients again with safetensors.numpy.save_file or numpy.savez, one contiguous float "
                "array per tensor name")


class GoldenFileError(ValueError):
    """A golden or candidate file that is refused before any array is read."""

    def __init__(self, path, why: str, remedy: str = GOLDEN_REMEDY):
        self.path, self.why, self.remedy = path, why, remedy
        super().__init__(f"{path}: refused: {why}. Remedy: {remedy}.")


# ---------------------------------------------------------------- shapes of a case

def grad_shapes(case) -> dict:
    """name → shape of every gradient (and so of sens and amp) of ``case`` (``input`` in the caller's layout)."""
    return case.grad_shapes()


def file_shapes(case, layout: str = "torch") -> dict:
    """name → (shape, allowed safetensors dtypes) of every tensor of a golden file in ``layout``."""
    shapes = case.file_shapes()
    if case.check_layout(layout) == "torch":
        return shapes
    return {name: (shape, {"I64"} if name.endswith("sequence_lens") else {"F64"})
            for name, shape in _in_layout(case, {k: v[0] for k, v in shapes.items()}, onnx_names).items()}


ONNX_PREFIX = {"state_dict": "params"}  # ONNX has no state_dict: its weights are the operator's inputs


def _groups(tensors: dict, rename: dict) -> dict:
    """A golden file's ``prefix.name`` tensors grouped by prefix (renamed by ``rename``): prefix → {name: tensor}."""
    groups: dict = {}
    for full, v in tensors.items():
        prefix, name = full.split(".", 1)
        groups.setdefault(rename.get(prefix, prefix), {})[name] = v
    return groups


def _in_layout(case, tensors: dict, convert) -> dict:
    """A golden file's tensors with each prefix's group passed through ``convert(config, group)`` (``to_onnx``,
    ``onnx_names``), the ``state_dict`` prefix renamed to ``params``."""
    return {f"{p}.{k}": v for p, g in _groups(tensors, ONNX_PREFIX).items() for k, v in convert(case.config, g).items()}


def _from_layout(case, tensors: dict) -> dict:
    """The inverse of ``_in_layout(case, tensors, to_onnx)``: torch's names and prefixes again."""
    back = {v: k for k, v in ONNX_PREFIX.items()}
    return {f"{p}.{k}": v for p, g in _groups(tensors, back).items() for k, v in from_onnx(case.config, g).items()}


def case_elements(case) -> int:
    """How many numbers a case's file holds: its inputs, gradients, sensitivities and amplifications."""
    return sum(math.prod(s) for s, _ in file_shapes(case).values())


KINDS = {"seed": Case, "module": ModuleCase}  # a file's metadata kind → the class of its case


def case_from_spec(spec: object, path, kind: str = "seed"):
    """The case a file's metadata describes, every field checked."""
    if not isinstance(spec, dict):
        raise GoldenFileError(path, "metadata 'case' is not an object")
    try:
        case = KINDS[kind].from_spec(spec, MAX_DIM)
    except ValueError as e:
        raise GoldenFileError(path, str(e)) from None
    if case_elements(case) > MAX_ELEMENTS:
        raise GoldenFileError(path, f"case {case.name} declares more than {MAX_ELEMENTS} elements")
    return case


def spec_of(case) -> dict:
    """The metadata's ``case`` object: every field of the case."""
    return {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}


# ---------------------------------------------------------------- bounded JSON

def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _unique(pairs: list) -> dict:
    """A JSON object whose keys are all different: with a key twice, which one a reader takes is its choice."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r} appears twice")
    return d


def parse_json(raw: bytes | str, path, what: str):
    """``raw`` parsed as JSON with every cost bounded: depth, integer size, no NaN/Infinity constants."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise GoldenFileError(path, f"{what} is not JSON (not UTF-8)") from None
    try:  # json's scanner is linear, and it stops deep nesting with RecursionError, not a crash
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant, object_pairs_hook=_unique)
    except RecursionError:
        raise GoldenFileError(path, f"{what} nests too deep (more than {MAX_JSON_DEPTH})") from None
    except (json.JSONDecodeError, ValueError) as e:
        raise GoldenFileError(path, f"{what} is not JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    depth, level = 0, [value]  # measured without recursion
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise GoldenFileError(path, f"{what} nests more than {MAX_JSON_DEPTH} deep, deeper than a golden file")
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())
                 if isinstance(c, (dict, list))]
    return value


# ---------------------------------------------------------------- safetensors

def _regular_file(path: Path) -> int:
    if path.is_symlink():
        raise GoldenFileError(path, "it is a symbolic link", "copy the file itself into the folder")
    if not path.is_file():
        raise GoldenFileError(path, "it is not a regular file", "pass a folder of .safetensors files")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GoldenFileError(path, f"{size} bytes, over the limit of {MAX_FILE_BYTES}")
    return size


def _read_header(path: Path) -> tuple[dict, dict, int]:
    """(tensor entries, metadata, data start) of a safetensors file, validated as data."""
    size = _regular_file(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise GoldenFileError(path, f"cannot be read ({e.strerror})", "check the file's permissions") from None
    with f:
        head = f.read(8)
        if len(head) < 8:
            raise GoldenFileError(path, f"truncated: {size} bytes, a safetensors file starts with 8")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise GoldenFileError(path, f"header length {n} overruns the file ({size} bytes) or the limit")
        raw = f.read(n)
    header = parse_json(raw, path, "header")
    if not isinstance(header, dict):
        raise GoldenFileError(path, "header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise GoldenFileError(path, "__metadata__ is not a map of strings")
    data_len = size - 8 - n
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise GoldenFileError(path, f"tensor {name!r} has a malformed entry")
        dt, shape, off = e["dtype"], e["shape"], e["data_offsets"]
        if not (isinstance(shape, list) and all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)):
            raise GoldenFileError(path, f"tensor {name!r} declares shape {shape!r}")
        if not (isinstance(off, list) and len(off) == 2 and all(type(o) is int for o in off)
                and 0 <= off[0] <= off[1] <= data_len):
            raise GoldenFileError(path, f"tensor {name!r} has data offsets {off!r} outside the file (truncated?)")
        item = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8}.get(dt)
        if item is None:
            raise GoldenFileError(path, f"tensor {name!r} has dtype {dt!r}; only real floats (and an int64 "
                                        "target) are accepted")
        if off[1] - off[0] != math.prod(shape) * item:
            raise GoldenFileError(path, f"tensor {name!r}: {off[1] - off[0]} bytes for shape {shape} of {dt}")
        spans.append(tuple(off))
    pos = 0
    for a, b in sorted(spans):
        if a != pos:
            raise GoldenFileError(path, "tensor data overlap or leave holes")
        pos = b
    if pos != data_len:
        raise GoldenFileError(path, f"{data_len - pos} bytes of data belong to no tensor")
    return header, meta, 8 + n


def _read_tensors(path: Path, header: dict, start: int) -> dict:
    out = {}
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise GoldenFileError(path, f"cannot be read ({e.strerror})", "check the file's permissions") from None
    with f:
        for name, e in header.items():
            a, b = e["data_offsets"]
            f.seek(start + a)
            buf = f.read(b - a)
            if len(buf) != b - a:
                raise GoldenFileError(path, f"tensor {name!r} is truncated")
            if e["dtype"] == "BF16":  # widen bfloat16 exactly: it is the top half of a float32
                arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(buf, np.dtype(ST_DTYPES[e["dtype"]]).newbyteorder("<"))
            out[name] = arr.reshape(e["shape"]).astype(arr.dtype.newbyteorder("="))
    return out


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def load_golden(path) -> tuple[Case, dict, Truth, dict]:
    """(case, inputs, truth, metadata) of one golden file; refuses anything unexpected."""
    path = Path(path)
    header, meta, start = _read_header(path)
    if "bptt" not in meta:
        raise GoldenFileError(path, "metadata 'bptt' is missing: not a golden file of this project")
    info = parse_json(meta["bptt"], path, "metadata 'bptt'")
    if not isinstance(info, dict) or type(info.get("schema")) is not int or info["schema"] not in READABLE:
        raise GoldenFileError(path, f"schema {info.get('schema') if isinstance(info, dict) else None!r}, "
                                    f"this bptt-reference reads schemas {READABLE}",
                              "update bptt-reference (pip install -U), or export the case again with this one")
    kind = info.get("kind", "seed") if info["schema"] >= 2 else "seed"
    if kind not in KINDS:
        raise GoldenFileError(path, f"metadata kind is {kind!r}, expected one of {tuple(KINDS)}")
    case = case_from_spec(info.get("case"), path, kind)
    layout = info.get("layout", "torch") if info["schema"] >= SCHEMA_LAYOUT else "torch"
    try:
        if layout not in LAYOUTS or case.check_layout(layout) != layout:
            raise LayoutError(f"metadata layout is {layout!r}, expected one of {LAYOUTS} (onnx for a module case "
                              "only)")
    except LayoutError as e:
        raise GoldenFileError(path, str(e)) from None
    expected = file_shapes(case, layout)
    if set(header) != set(expected):
        raise GoldenFileError(path, f"tensors {sorted(set(header) ^ set(expected))} unexpected or missing "
                                    f"for case {case.name}")
    for name, (shape, dtypes) in expected.items():
        if tuple(header[name]["shape"]) != shape or header[name]["dtype"] not in dtypes:
            raise GoldenFileError(path, f"tensor {name!r} declares {header[name]['dtype']} "
                                        f"{tuple(header[name]['shape'])}, case {case.name} needs "
                                        f"{'/'.join(sorted(dtypes))} {shape}")
    if info.get("name") != case.name or path.name != f"{case.file_stem}.safetensors":
        raise GoldenFileError(path, f"its metadata holds case {case.name} (name {info.get('name')!r}), which a "
                                    f"file named {path.name} does not", f"name it {case.file_stem}.safetensors, "
                                    "or export the case again")
    hashes = info.get("sha256")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise GoldenFileError(path, "metadata sha256 is not a map of tensor names to hex digests")
    t = _read_tensors(path, header, start)
    for name, a in t.items():
        if hashes.get(name) != sha256(a):
            raise GoldenFileError(path, f"tensor {name!r} does not match its SHA-256 in the metadata")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise GoldenFileError(path, f"tensor {name!r} holds NaN or Inf")
        if name.startswith("amp.") and not (a >= 1).all() or name.startswith("sens.") and not (a >= 0).all():
            bad = "values below 1" if name.startswith("amp.") else "negative values"
            raise GoldenFileError(path, f"tensor {name!r} holds {bad}: an amplification is at least 1, a "
                                        "sensitivity at least 0")
    if layout == "onnx":
        t = _from_layout(case, t)
    inputs, truth = case.from_tensors(t)
    _inputs_valid(path, case, inputs)
    return case, inputs, truth, info


def _inputs_valid(path, case, inputs: dict) -> None:
    """The inputs are the case's numbers in its dtype (a float32 case's survive a float32 round trip) and
    pass the contract's checks (finite, classes in range, lengths in 1…T), or the file is refused."""
    for name, a in case.float_tensors(inputs).items():
        with np.errstate(over="ignore"):
            if not np.array_equal(a.astype(case.dtype).astype(np.float64), a):
                raise GoldenFileError(path, f"tensor {name!r} holds numbers that are not {case.dtype} numbers, "
                                            f"which a {case.dtype} case's inputs are")
    try:
        case.check_inputs(inputs)
    except (TypeError, ValueError) as e:
        raise GoldenFileError(path, f"its inputs are not a valid case: {e}") from None


def write_golden(path, case, inputs: dict, truth: Truth, extra: dict, layout: str = "torch") -> None:
    """One golden file; a module case's gradients in the caller's layout (``input`` batch-first when it is),
    its names and shapes those of ``layout`` (``oracle.layouts``)."""
    from safetensors.numpy import save

    tensors = case.file_tensors(inputs, truth)
    if case.check_layout(layout) != layout:
        raise LayoutError(f"{case.name}: the seed model has no ONNX form. Remedy: --layout torch for it.")
    if layout == "onnx":
        tensors = _in_layout(case, tensors, to_onnx)
    tensors = {k: np.ascontiguousarray(v, dtype=np.int64 if v.dtype.kind in "iu" else np.float64)
               for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise ValueError(f"{case.name}: {k} is not finite; a golden case is never written with NaN/Inf")
    info = {"schema": SCHEMA, "kind": case.kind, "name": case.name, "case": spec_of(case), "seed": case.seed,
            **extra,
            **({"schema": SCHEMA_LAYOUT, "layout": "onnx"} if layout == "onnx" else {}),
            "sha256": {k: sha256(v) for k, v in tensors.items()}}
    tmp = Path(str(path) + ".tmp")
    try:
        with open(tmp, "wb") as f:  # open(): the mode follows the umask, as for any file the user writes
            f.write(save(tensors, metadata={"bptt": json.dumps(info, sort_keys=True)}))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind


def environment() -> dict:
    """Versions, BLAS and platform, for the metadata and benchmark reports."""
    import array_api_compat
    import safetensors
    import torch

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informative only
        blas = "unknown"
    from importlib.metadata import PackageNotFoundError, version
    try:
        pkg = version("bptt-reference")
    except PackageNotFoundError:
        pkg = "source"
    return {"bptt-reference": pkg, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "array-api-compat": array_api_compat.__version__,
            "safetensors": safetensors.__version__, "blas": blas, "machine": platform.machine(),
            "platform": platform.platform()}


# ---------------------------------------------------------------- candidates' gradient files

def _check_declared(path, name: str, dtype_ok: bool, dtype: str, shape: tuple, expected: dict) -> None:
    """``expected``: name → the shapes it may have (a list)."""
    if name not in expected:
        raise GoldenFileError(path, f"unexpected tensor {name!r}; a gradient file holds only "
                                    f"{', '.join(expected)}", "name the tensors after the gradient set")
    if not dtype_ok:
        raise GoldenFileError(path, f"tensor {name!r} has dtype {dtype}; gradients are real floats",
                              "save float16/bfloat16/float32/float64 arrays")
    if tuple(shape) not in expected[name]:
        raise GoldenFileError(path, f"tensor {name!r} declares shape {tuple(shape)}, the case needs "
                                    f"{' or '.join(map(str, expected[name]))}",
                              "save the gradient with the shape of its tensor")


def expected_grads(case, layout: str = "torch") -> dict:
    """name → the shapes a candidate's gradient may have for ``case`` in ``layout`` (a merged ONNX bias too)."""
    return case.expected_grads(layout)


def load_grads(path, case: Case, layout: str = "torch") -> dict:
    """A candidate's gradient set for ``case`` in ``layout`` from ``.safetensors`` or ``.npz``, refused if
    unexpected; returned under the names of ``layout``."""
    try:
        return _load_grads(Path(path), case, layout)
    except GoldenFileError as e:  # the readers are the golden files' too: a candidate's file has its own remedy
        if e.remedy != GOLDEN_REMEDY:
            raise
        raise GoldenFileError(e.path, e.why, GRADS_REMEDY) from None


def _load_grads(path: Path, case: Case, layout: str) -> dict:
    expected = case.expected_grads(layout)
    try:  # a tensor named in the other layout: say which --layout reads it
        other_names = set(case.expected_grads("onnx" if layout == "torch" else "torch")) - set(expected)
    except LayoutError:  # an LSTM with projections has no ONNX form
        other_names = set()
    if path.suffix == ".safetensors":
        header, _, start = _read_header(path)
        for name, e in header.items():
            _other_layout(path, name, other_names, layout)
            _check_declared(path, name, e["dtype"] in FLOAT_ST, e["dtype"], e["shape"], expected)
        return _read_tensors(path, header, start)
    if path.suffix != ".npz":
        raise GoldenFileError(path, "only .safetensors and .npz are read (never pickle or .pt)",
                              "save with safetensors.numpy.save_file or numpy.savez")
    _regular_file(path)
    if not zipfile.is_zipfile(path):
        raise GoldenFileError(path, "not a zip archive (.npz)", "save with numpy.savez")
    try:
        return _read_npz(path, expected, lambda name: _other_layout(path, name, other_names, layout))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as e:
        if isinstance(e, GoldenFileError):
            raise
        raise GoldenFileError(path, f"unreadable archive ({e.__class__.__name__}: {e})",
                              "save with numpy.savez") from None


def _other_layout(path, name: str, other_names: set, layout: str) -> None:
    if name in other_names:
        other = "onnx" if layout == "torch" else "torch"
        raise GoldenFileError(path, f"tensor {name!r} is named in {other}'s layout, and the gradients are read "
                                    f"in {layout}'s", f"check it with --layout {other} (oracle: layout={other!r})")


def _read_npz(path: Path, expected: dict, named=lambda name: None) -> dict:
    out = {}
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise GoldenFileError(path, f"member {next(n for n in names if names.count(n) > 1)!r} appears twice "
                                        "(which one a reader takes is its choice)", "save with numpy.savez")
        total = 0
        for i in infos:
            name = i.filename[:-4] if i.filename.endswith(".npy") else None
            if name is not None:
                named(name)
            if name not in expected or i.is_dir():
                raise GoldenFileError(path, f"unexpected member {i.filename!r}; members are "
                                            "<name>.npy for the gradient set",
                                      "save with numpy.savez(<name>=array, ...), one name per tensor of the case's "
                                      "gradient set (in the layout --layout says: torch's names or ONNX's)")
            total += i.file_size
            if i.file_size > MAX_MEMBER_BYTES or total > MAX_MEMBER_BYTES:
                raise GoldenFileError(path, f"member {i.filename!r} decompresses to {i.file_size} bytes, "
                                            f"past the limit of {MAX_MEMBER_BYTES}")
            if i.file_size > MAX_RATIO * max(i.compress_size, 1) + 4096:
                raise GoldenFileError(path, f"member {i.filename!r} expands {i.file_size}/{i.compress_size}×: "
                                            "a zip bomb", "save with numpy.savez")
        for i in infos:
            name = i.filename[:-4]
            with z.open(i) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f".npy format {version}")
                    shape, _, dtype = read_header(f)
                except ValueError as e:
                    raise GoldenFileError(path, f"member {i.filename!r} has a bad .npy header ({e})",
                                          "save the arrays with numpy.savez") from None
                _check_declared(path, name, dtype.kind == "f", str(dtype), shape, expected)
                if dtype.itemsize * math.prod(shape) != i.file_size - f.tell():  # data after the header
                    raise GoldenFileError(path, f"member {i.filename!r} is truncated or has trailing bytes")
            with z.open(i) as f:
                out[name] = np.lib.format.read_array(f, allow_pickle=False)
    return out
