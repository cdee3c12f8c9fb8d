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
import json
import math
import multiprocessing as mp
import os
import pickle
import signal
import struct
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


def invoke(fn: Callable, inputs: dict, kwargs: dict, kind: str = "seed"):
    """``fn`` on a case's inputs with the signature of its kind: manual.gradients' or manual.module_gradients'."""
    if kind == "module":
        more = {"grad_cn": inputs["grad_cn"]} if "grad_cn" in inputs else {}  # the LSTM's
        return fn(inputs["config"], inputs["state_dict"], inputs["input"], inputs["hx"],
                  grad_output=inputs["grad_output"], grad_hn=inputs["grad_hn"], lengths=inputs["lengths"], **more)
    return fn(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


def _plain(got, names: tuple[str, ...] | None = None) -> dict:
    """The candidate's result as name → base NumPy array, nothing else: no object of the candidate's crosses.

    Keys are kept when they are exactly ``str`` and, given ``names``, one of
    them (other entries are not judged); a None value is "not given". A torch
    tensor comes back as NumPy; bfloat16, which NumPy lacks, is widened to
    float32 (exact) and its name kept in ``BF16_LABEL``'s entry.
    """
    if not isinstance(got, Mapping):
        raise TypeError(f"returned {type(got).__name__}, expected a dict name → array")
    out, bf16 = {}, []
    for k in list(got.keys()):
        if type(k) is not str or (names is not None and k not in names):
            continue
        v = got[k]
        if v is None:
            continue
        if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch, any device
            v = v.detach().cpu()
            if str(v.dtype) == "torch.bfloat16":
                v, _ = v.float(), bf16.append(k)
            v = v.resolve_neg().resolve_conj().numpy() if hasattr(v, "resolve_neg") else v.numpy()
        try:
            a = np.array(v, copy=True, subok=False)
        except Exception as e:  # noqa: BLE001 - a ragged list, a generator, …: the reason is the verdict
            raise TypeError(f"{k}: not an array ({type(v).__name__}: {e})") from None
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{k}: dtype {a.dtype} is not a number (got {type(v).__name__})")
        out[str(k)] = np.ascontiguousarray(a)
    if bf16:
        out[BF16_LABEL] = bf16
    return out


BF16_LABEL = "__bfloat16__"  # the names whose arrays were bfloat16 (widened to float32 to cross)


def restore(grads: dict) -> dict:
    """The inverse of :func:`_plain`'s labelling: bfloat16 names become torch bfloat16 tensors again (exact)."""
    bf16 = grads.pop(BF16_LABEL, [])
    if bf16:
        import torch

        for k in bf16:
            grads[k] = torch.from_numpy(grads[k]).to(torch.bfloat16)
    return grads


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return "raised " + traceback.format_exception_only(type(e), e)[-1].strip()


def call(fn: Callable, inputs: dict, kwargs: dict, calls: int = CALLS, in_worker: bool = False,
         kind: str = "seed", names: tuple[str, ...] | None = None) -> Outcome:
    """``fn`` (the signature of ``kind``, see :func:`invoke`) on fresh copies of ``inputs``, ``calls`` times.

    In this process a KeyboardInterrupt is the user's and goes on up; in a
    worker (which ignores Ctrl-C: the checker handles it) it is the candidate's.
    """
    out = Outcome()
    for i in range(calls):
        mine = _copy(inputs)
        when = "" if i == 0 else f" (call {i + 1} of {calls} on the same inputs)"
        pid = os.getpid()
        try:
            got = invoke(fn, mine, kwargs, kind)
        except KeyboardInterrupt as e:
            if not in_worker:
                raise
            return Outcome(error=f"the candidate raised {type(e).__name__}{when}")
        except BaseException as e:  # noqa: BLE001 - a candidate's failure, sys.exit included, is a result
            _never_in_a_fork(pid)
            return Outcome(error=f"the candidate {_describe(e)}{when}")
        _never_in_a_fork(pid)
        changed = _changed(inputs, mine)
        if changed:
            return Outcome(error="the candidate changed its inputs: " + "; ".join(changed) + when)
        try:
            plain = _plain(got, names)
        except TypeError as e:
            return Outcome(error=f"{e}{when}")
        except Exception as e:  # noqa: BLE001 - a result that breaks on reading is the candidate's failure
            return Outcome(error=f"the candidate returned something unreadable: {_describe(e)[7:]}{when}")
        out.grads.append(plain if in_worker else restore(plain))
    return out


def _never_in_a_fork(pid: int) -> None:
    """A process the candidate forked returns here too: it must end, not answer for the worker."""
    if os.getpid() != pid:
        os._exit(0)


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

MAX_REPLY_BYTES = 2**31  # a reply larger than this is a broken worker, not a gradient set
REPLY_DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
                "uint8", "bool", "complex64", "complex128"}


def _encode(kind: str, task: int | None = None, error: str = "", calls: tuple = ()) -> bytes:
    """A reply as data only: a JSON header (what each array is) and the arrays' bytes; never a pickle."""
    entries, chunks, offset = [], [], 0
    for grads in calls:
        described = {}
        for name, a in grads.items():
            if name == BF16_LABEL:
                described[name] = a
                continue
            raw = a.astype(a.dtype.newbyteorder("="), copy=False).tobytes()  # the reader's (native) byte order
            described[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset, "nbytes": len(raw)}
            chunks.append(raw)
            offset += len(raw)
        entries.append(described)
    head = json.dumps({"kind": kind, "task": task, "error": error, "calls": entries}).encode()
    body = struct.pack("!Q", len(head)) + head + b"".join(chunks)
    return struct.pack("!Q", len(body)) + body


class ReplyError(ValueError):
    """A worker's reply that is not what ``_encode`` writes: the worker is broken or tampered with."""


def _decode(body: bytes) -> dict:
    """A reply, every field checked; arrays rebuilt from bytes with a known dtype."""
    try:
        (n,) = struct.unpack("!Q", body[:8])
        head = json.loads(body[8:8 + n])
    except (struct.error, ValueError, RecursionError) as e:
        raise ReplyError(f"unreadable header ({type(e).__name__})") from None
    if not isinstance(head, dict) or head.get("kind") not in ("ready", "load-error", "done"):
        raise ReplyError("no reply kind")
    if not isinstance(head.get("error"), str) or not isinstance(head.get("calls"), list):
        raise ReplyError("malformed reply")
    data, calls = memoryview(body)[8 + n:], []
    for described in head["calls"]:
        if not isinstance(described, dict):
            raise ReplyError("malformed call")
        grads = {}
        for name, e in described.items():
            if name == BF16_LABEL:
                if not (isinstance(e, list) and all(isinstance(k, str) for k in e)):
                    raise ReplyError("malformed bfloat16 names")
                grads[name] = e
                continue
            if not (isinstance(e, dict) and e.get("dtype") in REPLY_DTYPES and isinstance(e.get("shape"), list)
                    and all(type(d) is int and d >= 0 for d in e["shape"]) and len(e["shape"]) <= 8
                    and all(type(e.get(k)) is int for k in ("offset", "nbytes"))):
                raise ReplyError(f"malformed entry {name!r}")
            dt = np.dtype(e["dtype"])
            count = math.prod(e["shape"])
            if e["nbytes"] != count * dt.itemsize or not 0 <= e["offset"] <= len(data) - e["nbytes"]:
                raise ReplyError(f"entry {name!r} does not fit the reply")
            a = np.frombuffer(data, dt, count, e["offset"]).reshape(e["shape"]).copy()
            grads[name] = a
        calls.append(grads)
    return {"kind": head["kind"], "task": head.get("task"), "error": head["error"], "calls": calls}


def _send(fd: int, message: bytes) -> None:
    view = memoryview(message)
    while view:
        view = view[os.write(fd, view):]


def _serve(tasks, replies, ref: tuple) -> None:
    """A worker's life: load the candidate, then run one case per task until told to stop.

    Runs in a session of its own, so the checker can end it together with
    anything the candidate started (``os.killpg``).
    """
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the checker, which then stops the workers
    fd = replies.fileno()
    try:
        fn = load(ref)
    except BaseException as e:  # noqa: BLE001 - reported to the checker, which stops with a usage error
        _send(fd, _encode("load-error", error=_describe(e)))
        return
    _send(fd, _encode("ready"))
    while True:
        task = tasks.recv()
        if task is None:
            return
        i, inputs, kwargs, kind, names = task
        out = call(fn, inputs, kwargs, in_worker=True, kind=kind, names=names)
        _send(fd, _encode("done", i, out.error, tuple(out.grads)))


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
    """One worker process: a pipe for tasks (pickled by the checker), a pipe for replies (``_encode``'s
    data-only format, read without blocking so that a worker that writes half a reply cannot hang us)."""

    def __init__(self, ctx, ref: tuple, timeout: float):
        self.tasks_in, self.tasks = ctx.Pipe(duplex=False)
        self.replies, replies_out = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_serve, args=(self.tasks_in, replies_out, ref), daemon=True)
        self.proc.start()
        self.tasks_in.close()
        replies_out.close()
        os.set_blocking(self.replies.fileno(), False)
        self.buf = bytearray()
        self.task: int | None = None
        self.ready = False
        self.deadline = time.monotonic() + timeout

    @property
    def waited_on(self) -> bool:
        """Loading, or running a task: the deadline applies."""
        return not self.ready or self.task is not None

    def give(self, i: int, task: tuple) -> bool:
        """Hand task i over; False when the worker is gone (its pipe closed)."""
        try:
            self.tasks.send((i, *task))
        except OSError:
            return False
        self.task = i
        return True

    def read(self) -> tuple[list[bytes], bool]:
        """(complete replies received so far, whether the pipe is still open)."""
        open_ = True
        while True:
            try:
                chunk = os.read(self.replies.fileno(), 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                open_ = False
                break
            if not chunk:
                open_ = False
                break
            self.buf += chunk
            if len(self.buf) > MAX_REPLY_BYTES + 8:
                raise ReplyError("reply too large")
        out = []
        while len(self.buf) >= 8:
            (n,) = struct.unpack("!Q", self.buf[:8])
            if n > MAX_REPLY_BYTES:
                raise ReplyError("reply too large")
            if len(self.buf) < 8 + n:
                break
            out.append(bytes(self.buf[8:8 + n]))
            del self.buf[:8 + n]
        return out, open_

    def stop(self, kill: bool = False) -> None:
        """End the worker and everything it started (its whole session)."""
        if not kill and self.proc.is_alive():
            try:
                self.tasks.send(None)
            except OSError:
                pass
            self.proc.join(1.0)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the candidate's own children too
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.join()
        self.tasks.close()
        self.replies.close()


def run_isolated(ref: tuple, n: int, task: Callable[[int], tuple], done: Callable[[int, Outcome], None], *,
                 jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Run the candidate ``ref`` on tasks 0 … n−1 in up to ``jobs`` worker processes.

    ``task(i)`` gives task i's (inputs, kwargs, kind, names); it is called in this process
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
                    i = pending.popleft()
                    if w.give(i, task(i)):
                        w.deadline = time.monotonic() + timeout
                    else:  # it died between cases: the task never ran; another worker takes it
                        pending.appendleft(i)
                        w.ready = False
            now = time.monotonic()
            deadline = min((w.deadline for w in workers if w.waited_on), default=now + timeout)
            wait([w.replies for w in workers] + [w.proc.sentinel for w in workers],
                 timeout=min(max(0.0, deadline - now), 60.0))
            for w in list(workers):
                gone = _attend(w, done, timeout)
                if gone:
                    workers.remove(w)
    finally:
        for w in workers:
            w.stop()


def _attend(w: _Worker, done: Callable[[int, Outcome], None], timeout: float) -> bool:
    """Read what worker ``w`` said, or bury it; True when it is gone."""
    try:
        replies, open_ = w.read()
        for body in replies:
            r = _decode(body)
            if r["kind"] == "load-error":
                raise CandidateError(f"the candidate could not be loaded in a worker process: {r['error']}. "
                                     "Remedy: `python -c 'import MODULE'` shows the full error; fix it and rerun.")
            if r["kind"] == "ready" and not w.ready:
                w.ready = True
            elif r["kind"] == "done" and w.task is not None and r["task"] == w.task:
                i, w.task = w.task, None
                done(i, Outcome([restore(g) for g in r["calls"]], r["error"]))
            else:
                raise ReplyError(f"a {r['kind']!r} reply for task {r['task']!r} while it runs {w.task!r}")
    except ReplyError as e:  # something in the worker wrote to our pipe: it can no longer be trusted
        w.stop(kill=True)
        if w.task is not None:
            i, w.task = w.task, None
            done(i, Outcome(error=f"the worker process sent a malformed reply ({e}): the candidate wrote to "
                                  "the checker's pipe"))
        if not w.ready:
            raise CandidateError(f"the candidate could not be loaded in a worker process: malformed reply ({e})") \
                from None
        return True
    if not open_ or not w.proc.is_alive() or (w.waited_on and time.monotonic() > w.deadline):
        timed_out = w.proc.is_alive() and open_
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
