"""Running a candidate where it cannot hurt the checker: its own copies, its own process, a deadline.

A candidate is someone else's code, maybe native. ``call`` runs it on copies
of a case's inputs (twice, fresh copies each time: a candidate that keeps
state between calls shows it on the second), notices inputs changed in place,
and turns what it returned into plain NumPy arrays. ``run_isolated`` does the
same in worker processes (``multiprocessing``, spawn): an exception, a
``sys.exit``, an ``os._exit``, an abort or a segfault of native code, or a
hang past the timeout becomes that case's failure, with the reason, and the
run goes on with a fresh worker. The checker never imports the candidate
itself, so a candidate that crashes at import cannot end it either.

Nothing here judges: the reference side is computed by the checker before
the candidate runs, from the pristine inputs, and judged in the checker's
own process (``oracle.check``).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np

CALLS = 2  # calls per case: a candidate right only on its first call fails on the second
DEFAULT_TIMEOUT = 60.0  # seconds per case (both calls); the largest built-in case takes manual 10 ms
LOAD_TIMEOUT = 120.0  # seconds for a worker to start and import the candidate (torch alone takes seconds)


class CandidateError(ValueError):
    """The candidate cannot be run at all (not importable, not picklable, crashed while loading)."""


@dataclass
class Outcome:
    """What one case's candidate run gave: gradient sets (one per call) or the reason it gave none."""

    grads: list[dict] = field(default_factory=list)
    error: str = ""


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- one call, in whatever process

def _copy(a):
    """A deep copy of a case's inputs: arrays, dicts of arrays, lists (lengths), scalars (config)."""
    if isinstance(a, dict):
        return {k: _copy(v) for k, v in a.items()}
    if isinstance(a, list):
        return list(a)
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
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and \
            a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def invoke(fn: Callable, inputs: dict, kwargs: dict, kind: str = "seed"):
    """``fn`` on a case's inputs with the signature of its kind: manual.gradients' or manual.module_gradients'."""
    if kind == "module":
        return fn(inputs["config"], inputs["state_dict"], inputs["input"], inputs["hx"],
                  grad_output=inputs["grad_output"], grad_hn=inputs["grad_hn"], lengths=inputs["lengths"])
    return fn(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


def _plain(got) -> dict:
    """The candidate's result as name → NumPy array (bfloat16 stays a CPU torch tensor: NumPy has none)."""
    if not isinstance(got, Mapping):
        raise TypeError(f"returned {type(got).__name__}, expected a dict name → array")
    out = {}
    for k, v in got.items():
        if not isinstance(k, str):
            continue
        if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch, any device
            v = v.detach().cpu()
            if str(v.dtype) == "torch.bfloat16":
                out[k] = v.clone()
                continue
            v = v.numpy()
        try:
            a = np.array(v, copy=True)
        except Exception as e:  # noqa: BLE001 - a ragged list, a generator, …: the reason is the verdict
            raise TypeError(f"{k}: not an array ({type(v).__name__}: {e})") from None
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{k}: dtype {a.dtype} is not a number (got {type(v).__name__})")
        out[k] = a
    return out


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return "raised " + traceback.format_exception_only(type(e), e)[-1].strip()


def call(fn: Callable, inputs: dict, kwargs: dict, calls: int = CALLS, in_worker: bool = False,
         kind: str = "seed") -> Outcome:
    """``fn`` (the signature of ``kind``, see :func:`invoke`) on fresh copies of ``inputs``, ``calls`` times.

    In this process a KeyboardInterrupt is the user's and goes on up; in a
    worker (which ignores Ctrl-C: the checker handles it) it is the candidate's.
    """
    out = Outcome()
    for i in range(calls):
        mine = _copy(inputs)
        when = "" if i == 0 else f" (call {i + 1} of {calls} on the same inputs)"
        try:
            got = invoke(fn, mine, kwargs, kind)
        except KeyboardInterrupt as e:
            if not in_worker:
                raise
            return Outcome(error=f"the candidate raised {type(e).__name__}{when}")
        except BaseException as e:  # noqa: BLE001 - a candidate's failure, sys.exit included, is a result
            return Outcome(error=f"the candidate {_describe(e)}{when}")
        changed = _changed(inputs, mine)
        if changed:
            return Outcome(error="the candidate changed its inputs: " + "; ".join(changed) + when)
        try:
            out.grads.append(_plain(got))
        except TypeError as e:
            return Outcome(error=f"{e}{when}")
    return out


# ---------------------------------------------------------------- how a worker finds the candidate

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
        raise TypeError(f"{fn!r} is not callable")
    return fn


def reference_to(candidate: Callable | str) -> tuple:
    """What a worker is told to load: a spec as it is, a function pickled by reference."""
    if isinstance(candidate, str):
        describe_spec(candidate)
        return ("spec", candidate)
    if not callable(candidate):
        raise TypeError(f"candidate must be a function with manual.gradients' signature or 'MODULE:FUNCTION'; "
                        f"got {type(candidate).__name__}. Remedy: pass the function itself.")
    try:
        return ("pickle", pickle.dumps(candidate))
    except Exception as e:  # noqa: BLE001 - pickling errors come in many types
        raise CandidateError(
            f"the candidate {candidate!r} cannot be sent to a worker process ({type(e).__name__}: {e}). "
            "Remedy: define it at module level (not a lambda or a local function), pass 'MODULE:FUNCTION', "
            "or run in-process with isolate=False.") from None


# ---------------------------------------------------------------- the worker processes

def _serve(conn, ref: tuple) -> None:
    """A worker's life: load the candidate, then run one case per message until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the checker, which then stops the workers
    try:
        fn = load(ref)
    except BaseException as e:  # noqa: BLE001 - reported to the checker, which stops with a usage error
        conn.send(("load-error", _describe(e)))
        return
    conn.send(("ready", None))
    while True:
        task = conn.recv()
        if task is None:
            return
        inputs, kwargs, kind = task
        conn.send(("done", call(fn, inputs, kwargs, in_worker=True, kind=kind)))


def death(exitcode: int | None) -> str:
    """Why a worker is gone, in words."""
    if exitcode is None:
        return "the worker process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        what = {"SIGSEGV": "a segmentation fault: native code touched memory it does not own",
                "SIGABRT": "an abort (os.abort, a failed C assert)", "SIGBUS": "a bus error in native code",
                "SIGFPE": "a floating-point exception in native code",
                "SIGKILL": "killed from outside (out of memory?)"}.get(name, "killed by a signal")
        return f"the worker process died of {name}: {what}"
    return (f"the worker process exited with status {exitcode} during the candidate's call "
            "(os._exit, or a native library ending the process)")


class _Worker:
    def __init__(self, ctx, ref: tuple, timeout: float):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, ref), daemon=True)
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.ready = False
        self.deadline = time.monotonic() + timeout

    @property
    def waited_on(self) -> bool:
        """Loading, or running a task: the deadline applies."""
        return not self.ready or self.task is not None

    def stop(self, kill: bool = False) -> None:
        if not kill and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(1.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_isolated(ref: tuple, n: int, task: Callable[[int], tuple], done: Callable[[int, Outcome], None], *,
                 jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Run the candidate ``ref`` on tasks 0 … n−1 in up to ``jobs`` worker processes.

    ``task(i)`` gives task i's (inputs, kwargs, kind); it is called in this process
    just before the task is handed out (so the checker prepares case i while
    workers run the ones before it). ``done(i, outcome)`` receives each
    result as it comes. A worker that dies or passes the deadline gives its
    task an Outcome with the reason and is replaced.
    Raises CandidateError when the candidate cannot even be loaded.
    """
    jobs = max(1, min(jobs or default_jobs(), n))
    ctx = mp.get_context("spawn")
    pending, workers = deque(range(n)), []
    try:
        while pending or any(w.task is not None for w in workers):
            busy = sum(w.task is not None for w in workers)
            while len(workers) < min(jobs, len(pending) + busy):
                workers.append(_Worker(ctx, ref, max(timeout, LOAD_TIMEOUT)))
            for w in workers:
                if w.ready and w.task is None and pending:
                    w.task = pending.popleft()
                    w.conn.send(task(w.task))
                    w.deadline = time.monotonic() + timeout
            now = time.monotonic()
            deadline = min((w.deadline for w in workers if w.waited_on), default=now + timeout)
            wait([w.conn for w in workers] + [w.proc.sentinel for w in workers], timeout=max(0.0, deadline - now))
            for w in list(workers):
                gone = _attend(w, done, timeout)
                if gone:
                    workers.remove(w)
    finally:
        for w in workers:
            w.stop()


def _attend(w: _Worker, done: Callable[[int, Outcome], None], timeout: float) -> bool:
    """Read what worker ``w`` said, or bury it; True when it is gone."""
    if w.conn.poll():
        try:
            kind, value = w.conn.recv()
        except (EOFError, OSError):
            kind, value = "eof", None
        if kind == "load-error":
            raise CandidateError(f"the candidate could not be loaded in a worker process: {value}. "
                                 "Remedy: `python -c 'import MODULE'` shows the full error; fix it and rerun.")
        if kind == "ready":
            w.ready = True
            return False
        if kind == "done":
            i, w.task = w.task, None
            done(i, value)
            return False
    if not w.proc.is_alive() or (w.waited_on and time.monotonic() > w.deadline):
        timed_out = w.proc.is_alive()
        w.stop(kill=True)
        if not w.ready:
            why = f"took more than {max(timeout, LOAD_TIMEOUT):g} s" if timed_out else death(w.proc.exitcode)
            raise CandidateError(f"the candidate could not be loaded in a worker process: loading it {why}. "
                                 "Remedy: `python -c 'import MODULE'` shows what happens at import.")
        if w.task is not None:
            why = (f"timed out: no result after {timeout:g} s (raise --timeout if it is only slow)"
                   if timed_out else death(w.proc.exitcode))
            i, w.task = w.task, None
            done(i, Outcome(error=why))
        return True
    return False


__all__ = ["CALLS", "DEFAULT_TIMEOUT", "CandidateError", "Outcome", "call", "default_jobs", "reference_to",
           "run_isolated"]
