"""What crosses from a worker to the checker: data only, bounded by the case.

A candidate's result is read as plain NumPy arrays, nothing of the candidate's
kept (``plain``): only ``str`` keys naming a gradient of the case, and only
arrays of the case's own shapes copied (another shape crosses as its shape
alone, a ``withheld`` stand-in). A reply is a frame: its size, a JSON head
(what each array is) and the arrays' bytes, never a pickle
(``send_reply``). The checker refuses a frame larger than the case can take
(``reply_cap``) and checks its head against what it asked (``check_calls``)
before it reads the body, into one buffer (``read_arrays``: views, no copy).
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Mapping

import numpy as np

from contract.errors import BadType

CALLS = 2  # calls per case: a candidate right only on its first call fails on the second


SUPPORTED = ("float64", "float32", "float16", "bfloat16")  # what a candidate's floating tensors may be


REPLY_DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
                "uint8", "bool", "complex64", "complex128"}  # what crosses (integers fail later, by name)


def withheld(shape: tuple, dtype) -> np.ndarray:
    """A stand-in for an array of the wrong shape: that shape and dtype, no memory (every element one zero)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _shape_dtype(k: str, v) -> tuple[tuple, str, object]:
    """(shape, dtype name, the value as NumPy or torch) of one returned value, read without copying it where it
    is an array already (a view's shape is free; a list is converted: its memory is the candidate's)."""
    torch = sys.modules.get("torch")  # a torch tensor only if torch is loaded: no duck typing of a shape
    if torch is not None and isinstance(v, torch.Tensor):  # any device
        v = v.detach()
        return tuple(v.shape), str(v.dtype).rsplit(".", 1)[-1], v
    if not isinstance(v, np.ndarray):
        try:
            v = np.asarray(v)
        except Exception as e:  # noqa: BLE001 - a ragged list, a generator, …: the reason is the verdict
            raise BadType(f"{k}: not an array ({type(v).__name__}: {e})") from None
    if type(v) is not np.ndarray:  # a subclass (masked, matrix): its plain data only
        v = v.view(np.ndarray)
    return v.shape, v.dtype.name, v


def _one(k: str, v, shapes: list | None) -> tuple[np.ndarray, bool]:
    """(value as a base NumPy array, whether it was bfloat16) — or, when its shape is none of ``shapes``, a
    :func:`withheld` stand-in: nothing is copied before its shape is known to be the case's."""
    shape, dt, v = _shape_dtype(k, v)
    if dt not in REPLY_DTYPES and dt != "bfloat16":
        try:
            number = np.dtype(dt).kind in "biufc"
        except TypeError:  # one of torch's own (float8_e4m3fn, complex32, …)
            number = True
        if not number:
            raise BadType(f"{k}: dtype {dt} is not a number (got {type(v).__name__})")
        raise BadType(f"{k}: dtype {dt} is not supported: the checker reads {', '.join(SUPPORTED)} "
                        f"(returned {type(v).__name__} of {dt}). Remedy: return it as float64.")
    if shapes is not None and tuple(shape) not in shapes:
        return withheld(tuple(shape), "float32" if dt == "bfloat16" else dt), False
    if hasattr(v, "detach"):
        v = v.cpu()
        if dt == "bfloat16":
            v = v.float()  # NumPy has no bfloat16: widened (exact), its name kept
        v = v.resolve_neg().resolve_conj().numpy() if hasattr(v, "resolve_neg") else v.numpy()
    return np.ascontiguousarray(np.array(v, copy=True, subok=False)), dt == "bfloat16"


def plain(got, expect: Mapping | None = None) -> tuple[dict, list[str]]:
    """The candidate's result as name → base NumPy array, nothing else (no object of the candidate's crosses),
    and notes on what was ignored.

    ``expect``: name → the shapes the case allows for it. Only exact ``str``
    keys naming one of them are kept (a None value is "not given"; other
    keys are ignored, and a key that is not a ``str`` is noted); a value of
    another shape becomes a :func:`withheld` stand-in, never copied, so the
    memory spent here is bounded by the case. A torch tensor comes back as
    NumPy; bfloat16 is widened to float32 (exact) and its name kept in
    ``BF16_LABEL``'s entry.
    """
    if not isinstance(got, Mapping):
        raise BadType(f"returned {type(got).__name__}, expected a dict name → array")
    out, bf16, ignored, unknown = {}, [], {}, []
    for k in list(got.keys()):
        if type(k) is not str:
            ignored.setdefault(f"{type(k).__module__}.{type(k).__name__}".removeprefix("builtins."),
                               []).append(repr(str(k))[:40])
            continue
        if expect is not None and k not in expect:
            unknown.append(k[:40])
            continue
        v = got[k]
        if v is None:
            continue
        out[k], low = _one(k, v, None if expect is None else [tuple(s) for s in expect[k]])
        if low:
            bf16.append(k)
    if bf16:
        out[BF16_LABEL] = bf16
    notes = [f"{len(ks)} key(s) of type {t} ignored ({', '.join(ks[:3])}{', …' if len(ks) > 3 else ''}): "
             "use str keys" for t, ks in ignored.items()]
    if unknown:
        notes.append(f"{len(unknown)} key(s) that name no gradient of this case ignored ({', '.join(unknown[:3])}"
                     f"{', …' if len(unknown) > 3 else ''}): in the other layout? (--layout torch | onnx)")
    return out, notes


BF16_LABEL = "__bfloat16__"  # the names whose arrays were bfloat16 (widened to float32 to cross)


def restore(grads: dict) -> dict:
    """The inverse of :func:`plain`'s labelling: bfloat16 names become torch bfloat16 tensors again (exact)."""
    bf16 = grads.pop(BF16_LABEL, [])
    if bf16:
        import torch

        for k in bf16:
            grads[k] = torch.from_numpy(np.array(grads[k])).to(torch.bfloat16)
    return grads


HEAD_CAP = 2**20  # bytes of a reply's JSON head: names, shapes, a reason; an honest one is a few kB


TEXT_CAP = 4000  # characters of a reason or a note that cross
MAX_NOTES = 16  # notes that cross


MAX_ITEMSIZE = 16  # bytes per element of the widest dtype that crosses (complex128)


def encode(kind: str, task: int | None = None, error: str = "", calls: tuple = (),
           notes: list | tuple = (), expect: Mapping | None = None, skipped: str = "") -> tuple[bytes, list]:
    """A reply: a JSON head (what each array is) and the arrays' bytes, as buffers (never a pickle, no copy of a
    native contiguous array). An array whose shape is not the case's (a :func:`withheld` stand-in) crosses as
    its shape and dtype alone."""
    entries, parts, offset = [], [], 0
    for grads in calls:
        described = {}
        for name, a in grads.items():
            if name == BF16_LABEL:
                described[name] = a
            elif expect is not None and tuple(a.shape) not in [tuple(s) for s in expect[name]]:  # a stand-in
                described[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "withheld": True}
            else:
                a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))  # the reader's (native) byte order
                described[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                                   "nbytes": a.nbytes}
                parts.append(a.reshape(-1).view(np.uint8))
                offset += a.nbytes
        entries.append(described)
    head = json.dumps({"kind": kind, "task": task, "error": error[:TEXT_CAP], "skipped": skipped[:TEXT_CAP],
                       "notes": [n[:TEXT_CAP] for n in notes[:MAX_NOTES]], "calls": entries}).encode()
    return head, parts


def send_reply(fd: int, kind: str, task: int | None = None, error: str = "", calls: tuple = (),
               notes: list | tuple = (), expect: Mapping | None = None, skipped: str = "") -> None:
    """Frame ``!Q total, !Q head length, head, body`` written straight from the arrays' memory."""
    head, parts = encode(kind, task, error, calls, notes, expect, skipped)
    body = sum(p.nbytes for p in parts)
    _send(fd, struct.pack("!QQ", 8 + len(head) + body, len(head)) + head)
    for p in parts:
        _send(fd, p)


def _send(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ReplyError(ValueError):
    """A worker's reply that is not what ``send_reply`` writes for what was asked: the worker is broken or
    tampered with."""


def parse_head(raw: bytes) -> dict:
    try:
        head = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ReplyError(f"unreadable header ({type(e).__name__})") from None
    if not isinstance(head, dict) or head.get("kind") not in ("ready", "load-error", "took", "done"):
        raise ReplyError("no reply kind")
    notes = head.get("notes", [])
    if not isinstance(head.get("error"), str) or not isinstance(head.get("calls"), list) or \
            not isinstance(head.get("skipped", ""), str) or len(head.get("skipped", "")) > TEXT_CAP or \
            not (head.get("task") is None or type(head["task"]) is int) or not isinstance(notes, list) or \
            not all(isinstance(n, str) and len(n) <= TEXT_CAP for n in notes):
        raise ReplyError("malformed reply")
    if len(head["error"]) > TEXT_CAP or len(notes) > MAX_NOTES:  # what send_reply writes at the most
        raise ReplyError(f"a reason over {TEXT_CAP} characters or over {MAX_NOTES} notes")
    return head


def _entry(name: str, e, shapes: list[tuple], offset: int) -> int:
    """Check one array's description against the shapes the case allows; the offset after it."""
    if not (isinstance(e, dict) and isinstance(e.get("dtype"), str) and e["dtype"] in REPLY_DTYPES
            and isinstance(e.get("shape"), list) and all(type(d) is int and d >= 0 for d in e["shape"])
            and len(e["shape"]) <= 64 and math.prod(e["shape"]) < 2**62):  # NumPy's own limit on a shape
        raise ReplyError(f"malformed entry {name!r}")
    if e.get("withheld") is True:
        if tuple(e["shape"]) in shapes or len(e) != 3:
            raise ReplyError(f"entry {name!r} withheld with the case's own shape")
        return offset
    if tuple(e["shape"]) not in shapes:
        raise ReplyError(f"entry {name!r} has shape {tuple(e['shape'])}, none of the case's {shapes}")
    if e.get("offset") != offset or type(e.get("nbytes")) is not int or \
            e["nbytes"] != math.prod(e["shape"]) * np.dtype(e["dtype"]).itemsize:
        raise ReplyError(f"entry {name!r} does not fit the reply")
    return offset + e["nbytes"]


def check_calls(head: dict, expect: Mapping, body: int) -> None:
    """Every gradient set of a 'done' reply against what was asked: CALLS sets (none with an error), names the
    case's, shapes and byte counts the case's, the bfloat16 names entries of their set, the body all used."""
    calls, offset = head["calls"], 0
    asked = 0 if head["error"] or head.get("skipped") else CALLS  # an unsupported case answers with none
    if len(calls) != asked:
        raise ReplyError(f"{len(calls)} gradient sets where {asked} were asked")
    for described in calls:
        if not isinstance(described, dict):
            raise ReplyError("malformed call")
        for name, e in described.items():
            if name == BF16_LABEL:
                if not (isinstance(e, list) and len(set(e)) == len(e) and all(isinstance(k, str) and k != BF16_LABEL and
                                                    isinstance(described.get(k), dict) and
                                                    described[k].get("dtype") == "float32" and
                                                    not described[k].get("withheld") for k in e)):
                    raise ReplyError("bfloat16 names that are not float32 entries of their set")
            elif name not in expect:
                raise ReplyError(f"entry {name!r} is no gradient of this case")
            else:
                offset = _entry(name, e, [tuple(s) for s in expect[name]], offset)
    if offset != body:
        raise ReplyError(f"a body of {body} bytes where its entries take {offset}")


def read_arrays(head: dict, body: memoryview) -> list[dict]:
    """The gradient sets of a checked reply: views of ``body`` (no copy), withheld ones as stand-ins."""
    out = []
    for described in head["calls"]:
        grads = {}
        for name, e in described.items():
            if name == BF16_LABEL:
                grads[name] = list(e)
            elif e.get("withheld"):
                grads[name] = withheld(tuple(e["shape"]), e["dtype"])
            else:
                dt = np.dtype(e["dtype"])
                grads[name] = np.frombuffer(body, dt, e["nbytes"] // dt.itemsize, e["offset"]).reshape(e["shape"])
        out.append(restore(grads))
    return out


def reply_cap(expect: Mapping | None) -> int:
    """The most bytes a reply may take: its head, and CALLS gradient sets of the case's own sizes at the widest
    dtype. A worker that announces more is refused before any of it is read."""
    if expect is None:
        return HEAD_CAP
    return HEAD_CAP + CALLS * MAX_ITEMSIZE * sum(max(math.prod(s) for s in shapes) for shapes in expect.values())


