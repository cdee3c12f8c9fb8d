"""A worker process's life: a warden that no process of the candidate outlives.

The spawned process is a warden: its stdout and stderr go to a log file
(never the checker's), it is a child subreaper (Linux's
``PR_SET_CHILD_SUBREAPER``), and it forks the worker that loads the
candidate and runs one case per task. When the worker ends, for whatever
reason, or the checker sends SIGTERM, the warden kills every process below
it (those the candidate started, forked, put in a group of their own or
daemonised: a subreaper adopts them) and ends with the worker's own exit
status. Where there is no subreaper and no ``/proc`` (not Linux), only the
worker's own session and process group are killed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback

from oracle.checker.candidate import call, describe, load
from oracle.checker.wire import send_reply

LOG_ENV = "BPTT_WORKER_LOG"  # set for a worker process: the file its stdout and stderr go to


GUARD_MARK = "bptt: oracle.check was called while a worker process was importing the main script"


class _Stop(Exception):
    """The checker asked the warden to end the worker (SIGTERM)."""


_TERM = {"armed": False, "asked": False}  # the warden's SIGTERM: noted at once, acted on while it waits


def _on_term(signum, frame):
    _TERM["asked"] = True  # any thread may take the signal (BLAS's among them): never raise outside the wait
    if _TERM["armed"]:
        _TERM["armed"] = False  # once: the warden is then ending the worker
        raise _Stop


def serve(tasks, replies, ref: tuple, log: str) -> None:
    """A worker process's life. The spawned process is a warden: its stdout and stderr go to ``log`` (never the
    checker's), it is a child subreaper (Linux), and it forks the worker that loads the candidate and runs one
    case per task. When the worker ends, for whatever reason, or the checker sends SIGTERM, the warden kills
    every process below it (those the candidate started, forked or daemonised: a subreaper adopts them) and
    ends with the worker's own exit status."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the checker, which then stops the workers
    _redirect(log)
    subreaper(True)  # orphans below the warden come to it, not to init
    signal.signal(signal.SIGTERM, _on_term)
    out_r, out_w = os.pipe()  # the worker's stdout and stderr, kept bounded by the warden (OutputTail)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_r)
        os.close(out_w)
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
    os.close(out_w)
    tail = OutputTail(out_r)
    tasks.close()
    replies.close()  # the checker sees the reply pipe close when the worker and everything below it are gone
    status = None
    try:
        _TERM["armed"] = True
        if _TERM["asked"]:  # it came before the warden waited
            _TERM["armed"] = False
            raise _Stop
        _, status = os.waitpid(pid, 0)
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kill(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    _TERM["armed"] = False
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_descendants(pid)
    tail.write(1)  # every writer is gone now: what it kept, to the log
    _exit_as(status)


class OutputTail:
    """What the worker and its descendants write to their stdout and stderr, read by a thread of the warden and
    kept bounded: the first and the last KEEP bytes and how many were dropped between them, so a candidate that
    writes without end fills neither the disk nor the memory."""

    KEEP = 32 * 1024

    def __init__(self, fd: int):
        import threading

        self.fd, self.head, self.tail, self.dropped = fd, bytearray(), bytearray(), 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self.fd, 1 << 16):
            room = self.KEEP - len(self.head)
            self.head += chunk[:room]
            self.tail += chunk[room:] if room > 0 else chunk
            if len(self.tail) > self.KEEP:
                self.dropped += len(self.tail) - self.KEEP
                del self.tail[:len(self.tail) - self.KEEP]

    def write(self, fd: int) -> None:
        self.thread.join(5.0)
        cut = f"\n[… {self.dropped} bytes not kept …]\n".encode() if self.dropped else b""
        for part in (bytes(self.head), cut, bytes(self.tail)):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]


def _work(tasks, replies, ref: tuple) -> int:
    fd = replies.fileno()
    try:
        fn = load(ref)
    except BaseException as e:  # noqa: BLE001 - reported to the checker, which stops with a usage error
        send_reply(fd, "load-error", error=describe(e))
        return 0
    send_reply(fd, "ready")
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
        send_reply(fd, "took", i)  # the case has started: a death from here on is this case's
        out = call(fn, case, inputs, in_worker=True, expect=expect)
        send_reply(fd, "done", i, out.error, tuple(out.grads), out.notes, expect, out.skipped)


def _redirect(log: str) -> None:
    """stdin from /dev/null, stdout and stderr to ``log``: nothing the candidate starts holds the checker's."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def subreaper(on: bool | None) -> bool | None:
    """Whether this process is a child subreaper (``on`` None), or make it one or not; None where the system
    has no such thing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if on is None:
            flag = ctypes.c_int(0)
            return bool(flag.value) if prctl(37, ctypes.byref(flag), 0, 0, 0) == 0 else None  # PR_GET_…
        return prctl(36, int(on), 0, 0, 0) == 0 or None  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return None


def kill(pid: int) -> None:
    for kill, what in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(what, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(root: int, depth: int | None = None) -> list[int]:
    """The live (not zombie) processes below ``root`` (``depth`` 1: its children alone), from /proc; empty where
    there is no /proc."""
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
    out, todo = [], [(root, 0)]
    while todo:
        parent, level = todo.pop()
        for pid, state in children.get(parent, []):
            if depth is None or level + 1 < depth:
                todo.append((pid, level + 1))
            if state != b"Z":
                out.append(pid)
    return out


def end_descendants(worker: int) -> None:
    """Kill the worker's group and every live process below this one, and reap them, until none is left
    (a process forked between two looks is found by the next)."""
    kill(worker)
    for _ in range(200):
        _reap()
        alive = descendants(os.getpid())
        if not alive:
            return
        for pid in alive:
            kill(pid)
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
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep their default action: nothing to set
            pass
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


