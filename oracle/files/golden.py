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

Reading never runs code: every file goes through ``oracle.files.readers`` first.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from contract.errors import BadValue
from oracle.cases.module import ModuleCase
from oracle.cases.recurrence import RecurrenceCase
from oracle.cases.seed import Case
from oracle.files.readers import MAX_DIM, GoldenFileError, parse_json, read_header, read_tensors, sha256
from oracle.groundtruth import Truth
from oracle.layouts import LAYOUTS, LayoutError, from_onnx, onnx_names, to_onnx
from oracle.precision import round_to

SCHEMA = 2  # 2: a "kind" ("seed" or "module"); 1: the seed model's files before it, still read
SCHEMA_LAYOUT = 3  # 3: a "layout" ("onnx"), written only for ONNX-layout files, so older readers refuse them
READABLE = (1, 2, 3)
MAX_ELEMENTS = 20_000_000


# ---------------------------------------------------------------- shapes of a case

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


# a file's metadata kind → the class of its case
KINDS = {"seed": Case, "module": ModuleCase, "recurrence": RecurrenceCase}


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
    return case.spec()


def load_golden(path) -> tuple[Case, dict, Truth, dict]:
    """(case, inputs, truth, metadata) of one golden file; refuses anything unexpected."""
    path = Path(path)
    header, meta, start = read_header(path)
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
    t = read_tensors(path, header, start)
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
            if not np.array_equal(round_to(a, case.dtype).astype(np.float64), a):
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
            raise BadValue(f"{case.name}: {k} is not finite; a golden case is never written with NaN/Inf")
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


