"""Candidates that attack the checker's resources, not its judgement (tests/adversarial/test_checker_resources.py).

Each is module-level so a worker process can import it as
``checker_attacks:NAME``. They are hostile on purpose: a reply far larger
than the case, processes that try to outlive their worker, a worker that dies
between cases, replies forged on the worker's own pipe, dtypes and keys that
cannot cross.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection

import numpy as np
from wrong_candidates import _right_np

# ---------------------------------------------------------------- memory

def _cap_address_space() -> None:
    """This worker may map at most 2 GiB more than it had at its first call: were the checker ever to materialise
    an attack's view again, the worker fails with MemoryError instead of taking the machine down."""
    import resource

    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        return

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = vm + 2 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def broadcast_view(params, x, target, **kw):
    """Wxh as a view of one float64 broadcast to $BPTT_ATTACK_N elements (8 bytes for the candidate)."""
    if os.environ.get("BPTT_ATTACK_CAP", "1") == "1":
        _cap_address_space()
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = np.broadcast_to(np.zeros(1), (int(os.environ.get("BPTT_ATTACK_N", 2 * 10**9)),))
    return g


def _pipe(readable: bool) -> Connection:
    """The worker's own task (readable) or reply (writable) pipe, as hostile code finds it."""
    return next(c for c in gc.get_objects() if isinstance(c, Connection) and not c.closed and
                (c.readable if readable else c.writable))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def forged_frame(params, x, target, **kw):
    """Announces a 400 MiB reply on the reply pipe and streams it from a 1 MiB buffer."""
    fd, size = _pipe(False).fileno(), 400 * 2**20
    chunk = bytes(2**20)
    try:
        _write(fd, struct.pack("!Q", size))
        for _ in range(size // len(chunk)):
            _write(fd, chunk)
    except OSError:  # the checker stopped reading: what it should do
        pass
    time.sleep(60)


# ---------------------------------------------------------------- processes that try to outlive the worker

def _record_pid() -> None:
    with open(os.environ["BPTT_TEST_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\n")


def setsid_daemon(params, x, target, **kw):
    """Double-forks a daemon in a session of its own that keeps the worker's stdout and stderr and writes."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            _record_pid()
            for _ in range(300):
                os.write(2, b"daemon still here\n")
                time.sleep(0.1)
        os._exit(0)
    os.waitpid(pid, 0)
    return _right_np(params, x, target, **kw)


def setpgid_child(params, x, target, **kw):
    """Starts a child in a process group of its own (outside the worker's), holding stdout and stderr."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], process_group=0)
    with open(os.environ["BPTT_TEST_PIDS"], "a") as f:
        f.write(f"{p.pid}\n")
    return _right_np(params, x, target, **kw)


# ---------------------------------------------------------------- a worker that dies between cases

def closes_task_pipe(params, x, target, **kw):
    """Right, but closes the worker's task pipe: the worker cannot take another case."""
    g = _right_np(params, x, target, **kw)
    for c in gc.get_objects():
        if isinstance(c, Connection) and not c.closed and c.readable:
            c.close()
    return g


def closes_reply_pipe(params, x, target, **kw):
    """Closes the worker's reply pipe, then hangs: the checker sees the pipe close while the worker lives."""
    os.close(_pipe(False).fileno())
    time.sleep(60)


# ---------------------------------------------------------------- forged replies, written by hand

def _frame(head: dict, body: bytes = b"") -> bytes:
    h = json.dumps(head).encode()
    inner = struct.pack("!Q", len(h)) + h + body
    return struct.pack("!Q", len(inner)) + inner


def forged_bfloat16_label(params, x, target, **kw):
    """A well-formed 'done' reply for task 0 naming Wxh as bfloat16 without a Wxh entry."""
    _write(_pipe(False).fileno(), _frame({"kind": "done", "task": 0, "error": "", "calls": [
        {"__bfloat16__": ["Wxh"]}, {"__bfloat16__": ["Wxh"]}]}))
    time.sleep(60)


def forged_one_call(params, x, target, **kw):
    """A 'done' reply for task 0 carrying one (right) gradient set instead of two, then a hang: the second call,
    where a stateful candidate shows, never happens."""
    g = _right_np(params, x, target, **kw)
    entries, body = {}, b""
    for k, a in g.items():
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")).tobytes()
        entries[k] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": len(body), "nbytes": len(raw)}
        body += raw
    _write(_pipe(False).fileno(), _frame({"kind": "done", "task": 0, "error": "", "calls": [entries]}, body))
    time.sleep(60)


# ---------------------------------------------------------------- what cannot cross, said by name

def long_double(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = g["Wxh"].astype(np.longdouble)
    return g


def complex_long_double(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = g["Wxh"].astype(np.clongdouble)
    return g


def nine_dims(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = g["Wxh"].reshape(g["Wxh"].shape + (1,) * 7)
    return g


def numpy_str_keys(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    return dict(zip(np.array(list(g)), g.values(), strict=True))


def uses_a_process_pool(params, x, target, **kw):
    """Right, computed in a child process of the candidate's own (multiprocessing)."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(1) as pool:
        return pool.apply(_right_np, (params, x, target), kw)


# ---------------------------------------------------------------- found in review

def self_kill(params, x, target, **kw):
    """The worker killed by SIGKILL, as the kernel's out-of-memory killer does it."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


_KILLED = []


def kill_warden(params, x, target, **kw):
    """Kills its own warden (the worker's parent) with SIGKILL, once, after starting a daemon that holds the
    output."""
    import signal

    if _KILLED:
        return _right_np(params, x, target, **kw)
    _KILLED.append(os.getppid())
    if os.fork() == 0:
        os.setsid()
        _record_pid()
        time.sleep(30)
        os._exit(0)
    os.kill(os.getppid(), signal.SIGKILL)
    return _right_np(params, x, target, **kw)


def stderr_flood(params, x, target, **kw):
    """Right, after writing $BPTT_FLOOD_MIB MiB to its stderr."""
    chunk = b"x" * 2**20
    for _ in range(int(os.environ.get("BPTT_FLOOD_MIB", "64"))):
        _write(2, chunk)
    return _right_np(params, x, target, **kw)


def hangs(params, x, target, **kw):
    time.sleep(3600)


def onnx_wide_W(config, state_dict, input, hx=None, **kw):
    """Right in ONNX's layout but W_l0, a view with a third axis of $BPTT_ATTACK_N (the first two are right)."""
    import manual
    from oracle.layouts import to_onnx

    _cap_address_space()
    g = to_onnx(config, manual.module_gradients(config, state_dict, input, hx, **kw))
    W = g["W_l0"]
    g["W_l0"] = np.broadcast_to(np.zeros(1), (W.shape[0], W.shape[1], int(os.environ.get("BPTT_ATTACK_N", 10**8))))
    return g
