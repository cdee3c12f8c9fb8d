"""One call of a candidate, in whatever process: its own copies of the inputs, twice, and what it returned read
as plain arrays (``oracle.checker.wire.plain``); how a worker finds the candidate (``MODULE:FUNCTION`` or a
function pickled by reference)."""

from __future__ import annotations

import importlib
import os
import pickle
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from contract.errors import BadType, BadValue
from oracle.checker.wire import CALLS, plain, restore


class CandidateError(BadValue):
    """The candidate cannot be run at all (not importable, not picklable, crashed while loading)."""


class Unsupported(NotImplementedError):  # noqa: N818 - the word a kernel writer raises: "unsupported: proj_size"
    """Raised by a candidate for a configuration it does not support (one layer only, no projection, H a multiple
    of 8 …): the case is skipped with this reason and counted apart, never passed nor failed.

    ``raise oracle.Unsupported("proj_size")``. A candidate may instead declare what it supports: a ``supports``
    attribute on the function, called with the case's fields (``oracle.cases.seed.Named.spec``), returning True,
    or False or a reason. Importing ``oracle`` does not import torch.
    """


@dataclass
class Outcome:
    """What one case's candidate run gave: gradient sets (one per call) or the reason it gave none, and notes on
    how its result was read (keys ignored)."""

    grads: list[dict] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # the candidate's reason for not supporting the case (Unsupported, or its `supports`)


def _copy(a):
    """A deep copy of a case's inputs: arrays, dicts of arrays, lists (lengths), scalars (config)."""
    if isinstance(a, dict):
        return {k: _copy(v) for k, v in a.items()}
    if isinstance(a, list):
        return list(a)
    if isinstance(a, tuple):  # the LSTM's (h0, c0)
        return tuple(_copy(b) for b in a)
    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a


def _changed(pristine: dict, given: dict, where: str = "") -> list[str]:
    """What the candidate changed in its copy of the inputs, each named as the caller wrote it
    (``params["Why"] was modified in place``, ``x was modified in place``)."""
    out = []
    for k, v in pristine.items():
        name = f'{where}["{k}"]' if where else k
        if not isinstance(given, dict) or k not in given:
            out.append(f"{name} was removed from the dict")
        elif isinstance(v, dict):
            out += _changed(v, given[k], name) if isinstance(given[k], dict) else [f"{name} was replaced"]
        elif not _same(v, given[k]):
            out.append(f"{name} was modified in place")
    if isinstance(given, dict):
        out += [f'{where}["{k}"] was added to the dict' if where else f"{k} was added"
                for k in given if k not in pristine]
    return out


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and \
            a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return "raised " + traceback.format_exception_only(type(e), e)[-1].strip()


def call(fn: Callable, case, inputs: dict, calls: int = CALLS, in_worker: bool = False,
         expect: Mapping | None = None) -> Outcome:
    """``fn`` (with the signature of ``case``: ``case.call(fn, inputs)``) on fresh copies of ``inputs``, ``calls``
    times; ``expect``: name → the shapes the case allows for that gradient (see :func:`plain`).

    In this process a KeyboardInterrupt is the user's and goes on up; in a
    worker (which ignores Ctrl-C: the checker handles it) it is the candidate's.
    """
    out = Outcome()
    try:
        out.skipped = declined(fn, case)
    except Exception as e:  # noqa: BLE001 - a declaration that breaks is the candidate's failure
        return Outcome(error=f"the candidate's supports() {describe(e)}{signature_hint(e, KeyError)}")
    if out.skipped:
        return out
    for i in range(calls):
        mine = _copy(inputs)
        when = "" if i == 0 else f" (call {i + 1} of {calls} on the same inputs)"
        pid = os.getpid()
        try:
            got = case.call(fn, mine)
        except KeyboardInterrupt as e:
            if not in_worker:
                raise
            return Outcome(error=f"the candidate raised {type(e).__name__}{when}", notes=out.notes)
        except Unsupported as e:
            _never_in_a_fork(pid)
            if i == 0:
                return Outcome(skipped=str(e) or "no reason given", notes=out.notes)
            return Outcome(error=f"the candidate raised Unsupported({str(e)!r}){when} after supporting the first "
                                 "call on the same inputs", notes=out.notes)
        except BaseException as e:  # noqa: BLE001 - a candidate's failure, sys.exit included, is a result
            _never_in_a_fork(pid)
            return Outcome(error=f"the candidate {describe(e)}{when}{signature_hint(e)}", notes=out.notes)
        _never_in_a_fork(pid)
        changed = _changed(inputs, mine)
        if changed:
            return Outcome(error="the candidate changed its inputs: " + "; ".join(changed) + when, notes=out.notes)
        try:
            arrays, notes = plain(got, expect)
        except TypeError as e:
            return Outcome(error=f"{e}{when}", notes=out.notes)
        except Exception as e:  # noqa: BLE001 - a result that breaks on reading is the candidate's failure
            why = f"the candidate returned something unreadable: {describe(e)[7:]}{when}"
            return Outcome(error=why, notes=out.notes)
        out.grads.append(arrays if in_worker else restore(arrays))
        out.notes += [n for n in notes if n not in out.notes]
    return out


SIGNATURES = ("; is it a case of its kind? A seed-model case calls it as manual.gradients(params, x, target, "
              "h0=…, …), a module case as manual.module_gradients(config, state_dict, input, hx, …), a recurrence "
              "case as manual.recurrence_gradients(variant, q, k, v, g, beta, scale=…, …). Remedy: select one kind, "
              "-k module, -k recurrence or -k 'not module and not recurrence'")


def signature_hint(e: BaseException, kind: type = TypeError) -> str:
    """A remedy for a candidate called with the other kind of case's arguments (an unexpected keyword, a missing
    positional argument; for ``supports``, a field the other kind has not)."""
    said = str(e)
    if isinstance(e, kind) and (kind is KeyError or "unexpected keyword argument" in said or
                                "required positional argument" in said):
        return SIGNATURES
    return ""


def declined(fn: Callable, case) -> str:
    """The reason the candidate declares for not supporting ``case`` ("" when it does or declares nothing)."""
    supports = getattr(fn, "supports", None)
    if supports is None:
        return ""
    answer = supports(case.spec())
    if answer is True:
        return ""
    if answer is False or (isinstance(answer, str) and answer):
        return answer or "declared unsupported"
    raise BadType(f"returned {type(answer).__name__} {answer!r}; supports() must return True, or False or a reason")


def _never_in_a_fork(pid: int) -> None:
    """A process the candidate forked returns here too: it must end, not answer for the worker."""
    if os.getpid() != pid:
        os._exit(0)


def describe_spec(spec: str) -> tuple[str, str]:
    """(module, function) of ``MODULE:FUNCTION``, or a CandidateError with a remedy."""
    module, _, func = spec.partition(":")
    if not module or not func:
        raise CandidateError(f"the candidate must read MODULE:FUNCTION; got {spec!r}. "
                             "Remedy: e.g. manual:gradients")
    return module, func


def load(ref: tuple) -> Callable:
    """The candidate from ``("spec", "module:function")`` or ``("pickle", bytes)``."""
    kind, what = ref
    if kind == "spec":
        module, func = describe_spec(what)
        fn = getattr(importlib.import_module(module), func)
    else:
        fn = pickle.loads(what)
    if not callable(fn):
        raise BadType(f"{fn!r} is not callable")
    return fn


def reference_to(candidate: Callable | str) -> tuple:
    """What a worker is told to load: a spec as it is, a function pickled by reference."""
    if isinstance(candidate, str):
        describe_spec(candidate)
        return ("spec", candidate)
    if not callable(candidate):
        raise BadType(f"candidate must be a function with manual.gradients' signature or 'MODULE:FUNCTION'; "
                        f"got {type(candidate).__name__}. Remedy: pass the function itself.")
    try:
        return ("pickle", pickle.dumps(candidate))
    except Exception as e:  # noqa: BLE001 - pickling errors come in many types
        raise CandidateError(
            f"the candidate {candidate!r} cannot be sent to a worker process ({type(e).__name__}: {e}). "
            "Remedy: define it at module level (not a lambda or a local function), pass 'MODULE:FUNCTION', "
            "or run in-process with isolate=False.") from None


