"""The hardened readers every file goes through: golden cases and candidates' gradient files alike.

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

import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from contract.errors import BadValue

MAX_FILE_BYTES = 256 * 2**20  # the largest built-in case is under 1 MiB


MAX_HEADER_BYTES = 2**20


MAX_MEMBER_BYTES = 64 * 2**20


MAX_RATIO = 200  # float64 gradients compress by 1.1–2×; zip bombs by 1000×


MAX_JSON_DEPTH = 8  # our header and metadata nest 3 deep


MAX_INT_DIGITS = 24  # sizes and offsets; a 5,000-digit integer is an attack on int(), not a size


ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64}


FLOAT_ST = {"F64", "F32", "F16", "BF16"}


GOLDEN_REMEDY = "regenerate it with `bptt export`"


class GoldenFileError(BadValue):
    """A golden or candidate file that is refused before any array is read (``where``: its path)."""

    def __init__(self, path, why: str, remedy: str = GOLDEN_REMEDY):
        self.path = path
        super().__init__(why, remedy, where=path)


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadValue(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def _no_constant(name: str):
    raise BadValue(f"{name} is not JSON")


def _unique(pairs: list) -> dict:
    """A JSON object whose keys are all different: with a key twice, which one a reader takes is its choice."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise BadValue(f"key {twice!r} appears twice")
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


def regular_file(path: Path) -> int:
    if path.is_symlink():
        raise GoldenFileError(path, "it is a symbolic link", "copy the file itself into the folder")
    if not path.is_file():
        raise GoldenFileError(path, "it is not a regular file", "pass a folder of .safetensors files")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GoldenFileError(path, f"{size} bytes, over the limit of {MAX_FILE_BYTES}")
    return size


def read_header(path: Path) -> tuple[dict, dict, int]:
    """(tensor entries, metadata, data start) of a safetensors file, validated as data."""
    size = regular_file(path)
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


def read_tensors(path: Path, header: dict, start: int) -> dict:
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


def read_npz(path: Path, expected: dict, named=lambda name: None) -> dict:
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
                        raise BadValue(f".npy format {version}")
                    shape, _, dtype = read_header(f)
                except ValueError as e:
                    raise GoldenFileError(path, f"member {i.filename!r} has a bad .npy header ({e})",
                                          "save the arrays with numpy.savez") from None
                check_declared(path, name, dtype.kind == "f", str(dtype), shape, expected)
                if dtype.itemsize * math.prod(shape) != i.file_size - f.tell():  # data after the header
                    raise GoldenFileError(path, f"member {i.filename!r} is truncated or has trailing bytes")
            with z.open(i) as f:
                out[name] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def check_declared(path, name: str, dtype_ok: bool, dtype: str, shape: tuple, expected: dict) -> None:
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


MAX_DIM = 1_000_000


