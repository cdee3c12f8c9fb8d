"""Running a candidate where it cannot hurt the checker: its own copies, its own process, a deadline, bounds.

A candidate is someone else's code, maybe native. ``call`` runs it on copies
of a case's inputs (twice, fresh copies each time: a candidate that keeps
state between calls shows it on the second), notices inputs changed in place,
and turns what it returned into plain NumPy arrays, copying only arrays of
the case's own shapes. ``run_isolated`` does the same in worker processes
(``multiprocessing``, spawn): an exception, a ``sys.exit``, an ``os._exit``,
an abort or a segfault of native code, or a hang past the timeout becomes
that case's failure, with the reason, and the run goes on with a fresh
worker. The checker never imports the candidate itself, so a candidate that
crashes at import cannot end it either.

Each worker process is a warden (a child subreaper on Linux, its output in a
log file) that forks the worker proper and, when it ends, kills every
process below it: nothing the candidate starts outlives its worker or holds
the checker's stdout. Replies are data only, their size bounded by the case
and their head checked against what was asked before their body is read.

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
import sys
import tempfile
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
    """What one case's candidate run gave: gradient sets (one per call) or the reason it gave none, and notes on
    how its result was read (keys ignored)."""

    grads: list[dict] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)


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


SUPPORTED = ("float64", "float32", "float16", "bfloat16")  # what a candidate's floating tensors may be
REPLY_DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
                "uint8", "bool", "complex64", "complex128"}  # what crosses (integers fail later, by name)


def withheld(shape: tuple, dtype) -> np.ndarray:
    """A stand-in for an array of the wrong shape: that shape and dtype, no memory (every element one zero)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _shape_dtype(k: str, v) -> tuple[tuple, str, object]:
    """(shape, dtype name, the value as NumPy or torch) of one returned value, read without copying it where it
    is an array already (a view's shape is free; a list is converted: its memory is the candidate's)."""
    if hasattr(v, "detach") and hasattr(v, "cpu") and hasattr(v, "shape"):  # torch, any device
        v = v.detach()
        return tuple(v.shape), str(v.dtype).rsplit(".", 1)[-1], v
    if not isinstance(v, np.ndarray):
        try:
            v = np.asarray(v)
        except Exception as e:  # noqa: BLE001 - a ragged list, a generator, …: the reason is the verdict
            raise TypeError(f"{k}: not an array ({type(v).__name__}: {e})") from None
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
            raise TypeError(f"{k}: dtype {dt} is not a number (got {type(v).__name__})")
        raise TypeError(f"{k}: dtype {dt} is not supported: the checker reads {', '.join(SUPPORTED)} "
                        f"(returned {type(v).__name__} of {dt}). Remedy: return it as float64.")
    if shapes is not None and tuple(shape) not in shapes:
        return withheld(tuple(shape), "float32" if dt == "bfloat16" else dt), False
    if hasattr(v, "detach"):
        v = v.cpu()
        if dt == "bfloat16":
            v = v.float()  # NumPy has no bfloat16: widened (exact), its name kept
        v = v.resolve_neg().resolve_conj().numpy() if hasattr(v, "resolve_neg") else v.numpy()
    return np.ascontiguousarray(np.array(v, copy=True, subok=False)), dt == "bfloat16"


def _plain(got, expect: Mapping | None = None) -> tuple[dict, list[str]]:
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
        raise TypeError(f"returned {type(got).__name__}, expected a dict name → array")
    out, bf16, ignored = {}, [], {}
    for k in list(got.keys()):
        if type(k) is not str:
            ignored.setdefault(f"{type(k).__module__}.{type(k).__name__}".removeprefix("builtins."),
                               []).append(repr(str(k))[:40])
            continue
        if expect is not None and k not in expect:
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
    return out, notes


BF16_LABEL = "__bfloat16__"  # the names whose arrays were bfloat16 (widened to float32 to cross)


def restore(grads: dict) -> dict:
    """The inverse of :func:`_plain`'s labelling: bfloat16 names become torch bfloat16 tensors again (exact)."""
    bf16 = grads.pop(BF16_LABEL, [])
    if bf16:
        import torch

        for k in bf16:
            grads[k] = torch.from_numpy(np.array(grads[k])).to(torch.bfloat16)
    return grads


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return "raised " + traceback.format_exception_only(type(e), e)[-1].strip()


def call(fn: Callable, case, inputs: dict, calls: int = CALLS, in_worker: bool = False,
         expect: Mapping | None = None) -> Outcome:
    """``fn`` (with the signature of ``case``: ``case.call(fn, inputs)``) on fresh copies of ``inputs``, ``calls``
    times; ``expect``: name → the shapes the case allows for that gradient (see :func:`_plain`).

    In this process a KeyboardInterrupt is the user's and goes on up; in a
    worker (which ignores Ctrl-C: the checker handles it) it is the candidate's.
    """
    out = Outcome()
    for i in range(calls):
        mine = _copy(inputs)
        when = "" if i == 0 else f" (call {i + 1} of {calls} on the same inputs)"
        pid = os.getpid()
        try:
            got = case.call(fn, mine)
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
            plain, notes = _plain(got, expect)
        except TypeError as e:
            return Outcome(error=f"{e}{when}")
        except Exception as e:  # noqa: BLE001 - a result that breaks on reading is the candidate's failure
            return Outcome(error=f"the candidate returned something unreadable: {_describe(e)[7:]}{when}")
        out.grads.append(plain if in_worker else restore(plain))
        out.notes += [n for n in notes if n not in out.notes]
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


# ---------------------------------------------------------------- the wire: a reply is data only

HEAD_CAP = 2**20  # bytes of a reply's JSON head: names, shapes, a reason; an honest one is a few kB
TEXT_CAP = 4000  # characters of a reason or a note that cross
MAX_ITEMSIZE = 16  # bytes per element of the widest dtype that crosses (complex128)


def _head_and_body(kind: str, task: int | None = None, error: str = "", calls: tuple = (),
                   notes: list | tuple = (), expect: Mapping | None = None) -> tuple[bytes, list]:
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
    head = json.dumps({"kind": kind, "task": task, "error": error[:TEXT_CAP],
                       "notes": [n[:TEXT_CAP] for n in notes[:16]], "calls": entries}).encode()
    return head, parts


def _send_reply(fd: int, kind: str, task: int | None = None, error: str = "", calls: tuple = (),
                notes: list | tuple = (), expect: Mapping | None = None) -> None:
    """Frame ``!Q total, !Q head length, head, body`` written straight from the arrays' memory."""
    head, parts = _head_and_body(kind, task, error, calls, notes, expect)
    body = sum(p.nbytes for p in parts)
    _send(fd, struct.pack("!QQ", 8 + len(head) + body, len(head)) + head)
    for p in parts:
        _send(fd, p)


def _send(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ReplyError(ValueError):
    """A worker's reply that is not what ``_send_reply`` writes for what was asked: the worker is broken or
    tampered with."""


def _head(raw: bytes) -> dict:
    try:
        head = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ReplyError(f"unreadable header ({type(e).__name__})") from None
    if not isinstance(head, dict) or head.get("kind") not in ("ready", "load-error", "took", "done"):
        raise ReplyError("no reply kind")
    if not isinstance(head.get("error"), str) or not isinstance(head.get("calls"), list) or \
            not isinstance(head.get("notes", []), list) or not all(isinstance(n, str) for n in head.get("notes", [])):
        raise ReplyError("malformed reply")
    return head


def _entry(name: str, e, shapes: list[tuple], offset: int) -> int:
    """Check one array's description against the shapes the case allows; the offset after it."""
    if not (isinstance(e, dict) and e.get("dtype") in REPLY_DTYPES and isinstance(e.get("shape"), list)
            and all(type(d) is int and d >= 0 for d in e["shape"]) and len(e["shape"]) <= 64):
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


def _calls(head: dict, expect: Mapping, body: int) -> None:
    """Every gradient set of a 'done' reply against what was asked: CALLS sets (none with an error), names the
    case's, shapes and byte counts the case's, the bfloat16 names entries of their set, the body all used."""
    calls, offset = head["calls"], 0
    if len(calls) != (0 if head["error"] else CALLS):
        raise ReplyError(f"{len(calls)} gradient sets where {0 if head['error'] else CALLS} were asked")
    for described in calls:
        if not isinstance(described, dict):
            raise ReplyError("malformed call")
        for name, e in described.items():
            if name == BF16_LABEL:
                if not (isinstance(e, list) and all(isinstance(k, str) and k != BF16_LABEL and
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


def _arrays(head: dict, body: memoryview) -> list[dict]:
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


# ---------------------------------------------------------------- the worker processes

LOG_ENV = "BPTT_WORKER_LOG"  # set for a worker process: the file its stdout and stderr go to
GUARD_MARK = "bptt: oracle.check was called while a worker process was importing the main script"


class _Stop(Exception):
    """The checker asked the warden to end the worker (SIGTERM)."""


def _on_term(signum, frame):
    raise _Stop


def _serve(tasks, replies, ref: tuple, log: str) -> None:
    """A worker process's life. The spawned process is a warden: its stdout and stderr go to ``log`` (never the
    checker's), it is a child subreaper (Linux), and it forks the worker that loads the candidate and runs one
    case per task. When the worker ends, for whatever reason, or the checker sends SIGTERM, the warden kills
    every process below it (those the candidate started, forked or daemonised: a subreaper adopts them) and
    ends with the worker's own exit status."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the checker, which then stops the workers
    _redirect(log)
    _become_subreaper()
    signal.signal(signal.SIGTERM, _on_term)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = 1
        try:
            os.setsid()
            code = _work(tasks, replies, ref)
        except BaseException:  # noqa: BLE001 - the worker's own failure: its traceback goes to the log
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110 - a stream the candidate broke
                    pass
            os._exit(code)
    tasks.close()
    replies.close()  # the checker sees the reply pipe close when the worker and everything below it are gone
    status = None
    try:
        _, status = os.waitpid(pid, 0)
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _kill(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_descendants(pid)
    _exit_as(status)


def _work(tasks, replies, ref: tuple) -> int:
    fd = replies.fileno()
    try:
        fn = load(ref)
    except BaseException as e:  # noqa: BLE001 - reported to the checker, which stops with a usage error
        _send_reply(fd, "load-error", error=_describe(e))
        return 0
    _send_reply(fd, "ready")
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError) as e:
            print(f"the worker's task pipe is closed ({type(e).__name__}: {e}): did the candidate close it?",
                  file=sys.stderr)
            return 1
        if task is None:
            return 0
        i, case, inputs, expect = task
        _send_reply(fd, "took", i)  # the case has started: a death from here on is this case's
        out = call(fn, case, inputs, in_worker=True, expect=expect)
        _send_reply(fd, "done", i, out.error, tuple(out.grads), out.notes, expect)


def _redirect(log: str) -> None:
    """stdin from /dev/null, stdout and stderr to ``log``: nothing the candidate starts holds the checker's."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def _become_subreaper() -> bool:
    """Orphans below this process are re-parented to it, not to init (Linux's PR_SET_CHILD_SUBREAPER)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill(pid: int) -> None:
    for kill, what in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(what, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(root: int) -> list[int]:
    """The live (not zombie) processes below ``root``, from /proc; empty where there is no /proc."""
    children: dict[int, list[tuple[int, bytes]]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for d in names:
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(d), fields[0]))
    out, todo = [], [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            todo.append(pid)
            if state != b"Z":
                out.append(pid)
    return out


def end_descendants(worker: int) -> None:
    """Kill the worker's group and every live process below this one, and reap them, until none is left
    (a process forked between two looks is found by the next)."""
    _kill(worker)
    for _ in range(200):
        _reap()
        alive = descendants(os.getpid())
        if not alive:
            return
        for pid in alive:
            _kill(pid)
        time.sleep(0.005)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _exit_as(status: int | None) -> None:
    """End this process as the worker ended: its exit code, or the signal that killed it (no core file)."""
    code = 0 if status is None else os.waitstatus_to_exitcode(status)
    if code < 0:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(1.0)
        code = 128 - code
    os._exit(code)


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
    return (f"the worker process exited with status {exitcode} "
            "(os._exit, or a native library ending the process)")


GUARD_REMEDY = ("the script that calls oracle.check is run again by each worker process (spawn imports the main "
                "script), and the call is not under `if __name__ == \"__main__\":`. Remedy: put it under that "
                "guard, or pass isolate=False")


class _Worker:
    """One worker process (a warden and the worker it forked, see :func:`_serve`): a pipe for tasks (pickled by
    the checker), a pipe for replies (:func:`_send_reply`'s data-only frames, read without blocking so that a
    worker that writes half a reply cannot hang us, each frame's size and head checked against the case before
    its body is read), and a log file for its stdout and stderr."""

    def __init__(self, ctx, ref: tuple, timeout: float):
        self.tasks_in, self.tasks = ctx.Pipe(duplex=False)
        self.replies, replies_out = ctx.Pipe(duplex=False)
        fd, self.log = tempfile.mkstemp(prefix="bptt-worker-", suffix=".log")
        os.close(fd)
        self.proc = ctx.Process(target=_serve, args=(self.tasks_in, replies_out, ref, self.log), daemon=False)
        before = os.environ.get(LOG_ENV)
        os.environ[LOG_ENV] = self.log  # read by a worker that re-runs an unguarded script (see run_isolated)
        try:
            self.proc.start()
        finally:
            if before is None:
                os.environ.pop(LOG_ENV, None)
            else:
                os.environ[LOG_ENV] = before
        self.tasks_in.close()
        replies_out.close()
        os.set_blocking(self.replies.fileno(), False)
        self.size, self.frame, self.pos, self.head = bytearray(8), None, 0, None
        self.task: int | None = None
        self.started = False  # whether the worker said it took its task
        self.expect: Mapping | None = None
        self.last: int | None = None  # the case it answered last
        self.ready = False
        self.deadline = time.monotonic() + timeout
        self.killed = ""  # why the checker ended it, when it did
        self.broken = False  # its task pipe would not take a task

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
        self.task, self.expect, self.started = i, task[-1], False
        return True

    def read(self) -> tuple[list[tuple[dict, memoryview]], bool]:
        """(complete replies received so far, each a checked head and its body; whether the pipe is open)."""
        out = []
        while True:
            buf = self.size if self.frame is None else self.frame
            try:
                n = os.readv(self.replies.fileno(), [memoryview(buf)[self.pos:]])
            except BlockingIOError:
                return out, True
            except OSError:
                return out, False
            if n == 0:
                return out, False
            self.pos += n
            if self.frame is None:
                if self.pos == 8:
                    (size,) = struct.unpack("!Q", self.size)
                    cap = reply_cap(self.expect if self.task is not None else None)
                    if not 8 <= size <= cap:
                        raise ReplyError(f"a reply of {size} bytes announced, where this case's take at most {cap}")
                    self.frame, self.pos = bytearray(size), 0
                continue
            if self.head is None and self.pos >= 8:
                (hl,) = struct.unpack("!Q", self.frame[:8])
                if hl > min(HEAD_CAP, len(self.frame) - 8):
                    raise ReplyError(f"a head of {hl} bytes announced")
                if self.pos >= 8 + hl:
                    self.head, self.hl = self._check(_head(bytes(self.frame[8:8 + hl])), len(self.frame) - 8 - hl), hl
            if self.pos == len(self.frame):
                self._advance(self.head["kind"])
                out.append((self.head, memoryview(self.frame)[8 + self.hl:]))
                self.frame, self.pos, self.head = None, 0, None

    def _check(self, head: dict, body: int) -> dict:
        """A reply's head against what this worker was asked, before its body is read."""
        if not self.ready:
            if head["kind"] not in ("ready", "load-error") or head["calls"] or body:
                raise ReplyError(f"a {head['kind']!r} reply while the candidate loads")
        elif self.task is None or head["kind"] not in ("took", "done") or head.get("task") != self.task or \
                (head["kind"] == "took") == self.started:
            raise ReplyError(f"a {head['kind']!r} reply for task {head.get('task')!r} while it runs {self.task!r}")
        elif head["kind"] == "took":
            if head["calls"] or head["error"] or body:
                raise ReplyError("a 'took' reply with content")
        else:
            _calls(head, self.expect, body)
        return head

    def _advance(self, kind: str) -> None:
        """The worker's state once a whole reply of ``kind`` is in: loaded; took its task; answered it."""
        if kind == "ready":
            self.ready = True
        elif kind == "took":
            self.started = True
        elif kind == "done":
            self.task, self.last, self.started = None, self.task, False

    def stop(self, kill: str = "") -> None:
        """End the worker and everything it started: the warden ends them all (SIGTERM), or, should it not
        answer, everything is killed from here. ``kill``: why the checker ends it now rather than asking."""
        self.killed = self.killed or kill
        if not kill and self.proc.is_alive():
            try:
                self.tasks.send(None)
            except OSError:
                pass
            self.proc.join(5.0)
        if self.proc.is_alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.join(5.0)
        if self.proc.is_alive():  # the warden itself is stuck: what can be reached from here
            for pid in descendants(self.proc.pid):
                _kill(pid)
            _kill(self.proc.pid)
        self.proc.join()
        self.tasks.close()
        self.replies.close()

    def words(self) -> str:
        """The last line the worker wrote to its stderr, to name a death's cause; '' when none."""
        tail = self.tail(2000).strip().splitlines()
        return f"; its stderr ends: {tail[-1][-300:]}" if tail else ""

    def tail(self, n: int) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def why_dead(self) -> str:
        if GUARD_MARK in self.tail(4000):
            return GUARD_REMEDY
        if self.killed:
            return self.killed
        return death(self.proc.exitcode) + self.words()

    def close(self, stream) -> None:
        """Show what the worker printed (its last 64 kB) on ``stream``, and remove its log."""
        text = self.tail(1 << 16)
        try:
            size = os.path.getsize(self.log)
            os.unlink(self.log)
        except OSError:
            size = 0
        text = text.replace(GUARD_MARK + "\n", "")
        if text.strip():
            cut = f"[… {size - (1 << 16)} bytes before]\n" if size > 1 << 16 else ""
            stream.write(f"bptt: worker process {self.proc.pid} wrote:\n{cut}{text}")
            if not text.endswith("\n"):
                stream.write("\n")


def stop_if_importing_main() -> None:
    """Called while a spawned worker imports the main script (a script that calls oracle.check without the
    ``__main__`` guard): say so to the checker, through the worker's log, and end this worker at once."""
    if not getattr(mp.current_process(), "_inheriting", False):
        return
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(GUARD_MARK + "\n")
    os._exit(1)


def run_isolated(ref: tuple, n: int, task: Callable[[int], tuple], done: Callable[[int, Outcome], None], *,
                 jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT, stream=None) -> None:
    """Run the candidate ``ref`` on tasks 0 … n−1 in up to ``jobs`` worker processes.

    ``task(i)`` gives task i's (case, inputs, expect); it is called in this process
    just before the task is handed out (so the checker prepares case i while
    workers run the ones before it). ``done(i, outcome)`` receives each
    result as it comes. A worker that dies or passes the deadline gives the case it holds an Outcome with
    the reason, and is replaced: the case it runs, or, when it dies between cases, the case it answered last
    (``done`` is then called again for that case). What a worker printed goes to ``stream`` (stderr) when it
    ends. Raises CandidateError when the candidate cannot even be loaded.
    """
    stop_if_importing_main()
    stream = stream or sys.stderr
    jobs = max(1, min(jobs or default_jobs(), n))
    ctx = mp.get_context("spawn")
    pending, workers = deque(range(n)), []
    try:
        while pending or any(w.task is not None for w in workers):
            busy = sum(w.task is not None for w in workers)
            while len(workers) < min(jobs, len(pending) + busy):
                workers.append(_Worker(ctx, ref, max(timeout, LOAD_TIMEOUT)))
            for w in workers:
                if w.ready and w.task is None and pending and not w.broken:
                    i = pending.popleft()
                    if w.give(i, task(i)):
                        w.deadline = time.monotonic() + timeout
                    else:  # gone between cases: case i never ran; another worker takes it
                        pending.appendleft(i)
                        w.broken = True
            now = time.monotonic()
            deadline = min((w.deadline for w in workers if w.waited_on), default=now + timeout)
            wait([w.replies for w in workers] + [w.proc.sentinel for w in workers],
                 timeout=min(max(0.0, deadline - now), 60.0))
            for w in list(workers):
                if _attend(w, done, timeout, pending):
                    workers.remove(w)
                    w.close(stream)
        while workers:  # asked to stop, a worker ends with status 0; one that died already fails its last case
            w = workers.pop()
            w.stop()
            if w.proc.exitcode != 0 and w.last is not None:
                done(w.last, Outcome(error=f"the worker process died after answering this case: {w.why_dead()}"))
            w.close(stream)
    finally:
        for w in workers:
            w.stop()
            w.close(stream)


def _attend(w: _Worker, done: Callable[[int, Outcome], None], timeout: float, pending: deque) -> bool:
    """Read what worker ``w`` said, or bury it; True when it is gone."""
    try:
        replies, open_ = w.read()
        for head, body in replies:
            if head["kind"] == "load-error":
                raise CandidateError(f"the candidate could not be loaded in a worker process: {head['error']}. "
                                     "Remedy: `python -c 'import MODULE'` (MODULE: the candidate's module) shows "
                                     "the full error; fix it and rerun.")
            if head["kind"] == "done":
                done(head["task"], Outcome(_arrays(head, body), head["error"], list(head.get("notes", []))))
    except ReplyError as e:  # something in the worker wrote to our pipe: it can no longer be trusted
        w.stop(kill=f"the worker process sent a malformed reply ({e}): the candidate wrote to the checker's pipe")
        if not w.ready:
            raise CandidateError(f"the candidate could not be loaded in a worker process: malformed reply ({e})") \
                from None
        _bury(w, done, pending)
        return True
    timed_out = w.waited_on and time.monotonic() > w.deadline
    if open_ and w.proc.is_alive() and not timed_out and not w.broken:
        return False
    if not open_:
        w.proc.join(2.0)  # a worker that died closed the pipe first: its warden ends a moment later
    if timed_out:
        w.stop(kill=f"timed out: no result after {timeout:g} s (raise --timeout if it is only slow)" if w.ready
               else f"loading it took more than {max(timeout, LOAD_TIMEOUT):g} s")
    elif not open_ and w.proc.is_alive():
        w.stop(kill="the worker closed its reply pipe (the candidate closed or replaced the checker's file "
                    "descriptors?)")
    else:
        w.stop()
    if not w.ready:
        why = w.why_dead()
        if why == GUARD_REMEDY:
            raise CandidateError(f"the candidate could not be run: {GUARD_REMEDY}.")
        if not why.startswith("loading"):
            why = "loading it " + why
        raise CandidateError(f"the candidate could not be loaded in a worker process: {why}. "
                             "Remedy: `python -c 'import MODULE'` (MODULE: the candidate's module) shows what "
                             "happens at import.")
    _bury(w, done, pending)
    return True


def _bury(w: _Worker, done: Callable[[int, Outcome], None], pending: deque) -> None:
    """A stopped worker's death is the failure of the case it holds: the one it runs, or else (between cases,
    or handed a case it never started, which goes back to the queue) the one it answered last."""
    why = w.why_dead()
    if w.task is not None and (w.started or w.last is None):
        i, w.task = w.task, None
        done(i, Outcome(error=why))
        return
    if w.task is not None:
        pending.appendleft(w.task)
        w.task = None
    if w.last is not None:
        done(w.last, Outcome(error=f"the worker process died after answering this case: {why}"))


__all__ = ["CALLS", "DEFAULT_TIMEOUT", "CandidateError", "Outcome", "call", "default_jobs", "reference_to",
           "run_isolated"]
