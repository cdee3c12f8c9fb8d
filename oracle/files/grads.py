"""Candidates' gradient files (``bptt check --grads``): ``<case file stem>.safetensors`` or ``.npz``, one float
array per tensor of the case's gradient set, named in the layout asked for; read as data only
(``oracle.files.readers``), refused with a remedy for gradient files."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from oracle.cases.seed import Case
from oracle.files.readers import (
    FLOAT_ST,
    GOLDEN_REMEDY,
    GoldenFileError,
    check_declared,
    read_header,
    read_npz,
    read_tensors,
    regular_file,
)
from oracle.layouts import LayoutError

GRADS_REMEDY = ("write the gradients again with safetensors.numpy.save_file or numpy.savez, one contiguous float "
                "array per tensor name")


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
        header, _, start = read_header(path)
        for name, e in header.items():
            _other_layout(path, name, other_names, layout)
            check_declared(path, name, e["dtype"] in FLOAT_ST, e["dtype"], e["shape"], expected)
        return read_tensors(path, header, start)
    if path.suffix != ".npz":
        raise GoldenFileError(path, "only .safetensors and .npz are read (never pickle or .pt)",
                              "save with safetensors.numpy.save_file or numpy.savez")
    regular_file(path)
    if not zipfile.is_zipfile(path):
        raise GoldenFileError(path, "not a zip archive (.npz)", "save with numpy.savez")
    try:
        return read_npz(path, expected, lambda name: _other_layout(path, name, other_names, layout))
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


