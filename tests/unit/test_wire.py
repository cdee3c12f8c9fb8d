"""What crosses from a worker to the checker (oracle.checker.wire): a candidate's result read without copying what
is not the case's, a reply's size bounded by the case, its head checked field by field against what was asked."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from oracle.cases.seed import Case
from oracle.checker.candidate import call
from oracle.checker.wire import (
    BF16_LABEL,
    CALLS,
    HEAD_CAP,
    MAX_ITEMSIZE,
    ReplyError,
    check_calls,
    encode,
    parse_head,
    plain,
    reply_cap,
    withheld,
)

EXPECT = {"Wxh": [(4, 3)], "Whh": [(4, 4)]}


def test_a_huge_view_is_never_copied_in_the_worker():
    """2e9 float64 elements (16 GB were it materialised) cross as a shape; tracemalloc sees NumPy's allocations."""
    view = np.broadcast_to(np.zeros(1), (2 * 10**9,))
    tracemalloc.start()
    try:
        got, _ = plain({"Wxh": view, "Whh": np.ones((4, 4))}, EXPECT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got["Wxh"].shape == (2 * 10**9,) and got["Wxh"].strides == (0,)
    assert peak < 2**20, f"{peak} bytes traced"


def test_a_huge_torch_view_is_never_copied():
    torch = pytest.importorskip("torch")
    got, _ = plain({"Wxh": torch.zeros(1, dtype=torch.float64).expand(2 * 10**9)}, EXPECT)
    assert got["Wxh"].shape == (2 * 10**9,) and got["Wxh"].strides == (0,)


def test_the_reply_cap_is_the_cases_size():
    assert reply_cap(None) == HEAD_CAP
    assert reply_cap(EXPECT) == HEAD_CAP + CALLS * MAX_ITEMSIZE * (12 + 16)
    assert reply_cap({"input": [(2, 3, 4), (3, 2, 4)]}) == HEAD_CAP + CALLS * MAX_ITEMSIZE * 24


def entry(shape, offset=0, dtype="float64", **more):
    return {"dtype": dtype, "shape": list(shape), "offset": offset,
            "nbytes": int(np.prod(shape)) * np.dtype(dtype).itemsize, **more}


def head(*calls, error=""):
    return {"kind": "done", "task": 0, "error": error, "notes": [], "calls": list(calls)}


GOOD = {"Wxh": entry((4, 3)), "Whh": entry((4, 4), 96)}


SHIFTED = {"Wxh": entry((4, 3), 224), "Whh": entry((4, 4), 320)}  # the second set, after the first's bytes


@pytest.mark.parametrize("reply, body, words", [
    (head(GOOD), 224, "1 gradient sets where 2 were asked"),
    (head(GOOD, GOOD, GOOD), 3 * 224, "3 gradient sets where 2 were asked"),
    (head(GOOD, error="raised"), 224, "1 gradient sets where 0 were asked"),
    (head({BF16_LABEL: ["Wxh"]}, {}), 0, "bfloat16 names"),
    (head({"Wxh": entry((4, 3)), BF16_LABEL: ["Wxh"]}, {}), 96, "bfloat16 names"),
    (head({"by": entry((3,))}, {}), 24, "'by' is no gradient of this case"),
    (head({"Wxh": entry((3, 4))}, {}), 96, "has shape (3, 4), none of the case's"),
    (head({"Wxh": entry((4, 3), nbytes=8)}, {}), 8, "does not fit the reply"),
    (head({"Wxh": entry((4, 3), offset=8)}, {}), 104, "does not fit the reply"),
    (head({"Wxh": {"dtype": "float64", "shape": [4, 3], "withheld": True}}, {}), 0, "withheld with the case's"),
    (head({"Wxh": entry((4, 3), dtype="float128")}, {}), 192, "malformed entry"),
    (head(GOOD, SHIFTED), 2 * 224 + 1, "where its entries take"),
])
def test_a_reply_that_is_not_what_was_asked_is_refused(reply, body, words):
    with pytest.raises(ReplyError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_calls(reply, EXPECT, body)


def test_a_reply_as_asked_is_accepted():
    check_calls(head(GOOD, SHIFTED), EXPECT, 448)
    check_calls(head({"Wxh": {"dtype": "float64", "shape": [9], "withheld": True}}, {}), EXPECT, 0)


def test_the_same_in_process_without_a_worker():
    """In-process, a wrongly shaped view is withheld the same way, and str subclasses as keys are noted."""
    class Key(str):
        pass

    def candidate(params, x, target, h0=None, **kw):
        return {Key("Wxh"): np.zeros((4, 3)), "Whh": np.broadcast_to(np.zeros(1), (10**10,))}

    case = Case.parse("many-to-many/tanh/mse/T2-B1-D3-H4-O2/float64")
    out = call(candidate, case, case.inputs(), expect=EXPECT)
    assert not out.error and len(out.grads) == CALLS
    assert "Wxh" not in out.grads[0] and out.grads[0]["Whh"].shape == (10**10,)
    assert out.notes == ["1 key(s) of type test_wire.Key ignored ('Wxh'): use str keys"]
    assert withheld((3, 4), "float32").dtype == np.float32


def test_a_worker_reply_is_json_and_bytes_only():
    """What crosses is a JSON head and raw bytes: no pickle opcode can reach the checker."""
    h, parts = encode("done", 0, "", ({"Wxh": np.ones((4, 3))}, {"Wxh": np.ones((5,))}), [], EXPECT)
    described = json.loads(h)["calls"]
    assert described[0]["Wxh"]["nbytes"] == 96 and described[1]["Wxh"] == {"dtype": "float64", "shape": [5],
                                                                             "withheld": True}
    assert [p.dtype for p in parts] == [np.uint8]


@pytest.mark.parametrize("reply, words", [
    ({**head({"Wxh": {**entry((4, 3)), "dtype": [1]}}, {})}, "malformed entry"),
    ({**head({"Wxh": {"dtype": "float64", "shape": [2**62, 2**62], "withheld": True}}, {})}, "malformed entry"),
    ({**head({}, {}), "task": 0.0}, "malformed reply"),
    ({**head({}, {}), "notes": ["n"] * 17}, "over 16 notes"),
    ({**head({}, {}), "error": "e" * 4001}, "a reason over 4000 characters"),
])
def test_a_forged_head_is_refused_never_a_traceback(reply, words):

    with pytest.raises(ReplyError, match=words):
        check_calls(parse_head(json.dumps(reply).encode()), EXPECT, 96)


def test_a_bfloat16_name_twice_is_refused():
    twice = {"Wxh": entry((4, 3), dtype="float32"), BF16_LABEL: ["Wxh", "Wxh"]}
    with pytest.raises(ReplyError, match="bfloat16 names"):
        check_calls(head(twice, {}), EXPECT, 48)


