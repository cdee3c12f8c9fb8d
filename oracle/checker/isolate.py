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
own process (``oracle.checker.run``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from multiprocessing.connection import wait

from oracle.checker.candidate import CandidateError, Outcome
from oracle.checker.processes import (
    GUARD_MARK,
    GUARD_REMEDY,
    LOG_ENV,
    death,
    descendants,
    serve,
    stop_if_importing_main,
    subreaper,
)
from oracle.checker.processes import kill as kill_pid
from oracle.checker.wire import HEAD_CAP, ReplyError, check_calls, parse_head, read_arrays, reply_cap

DEFAULT_TIMEOUT = 60.0  # seconds per case (both calls); the largest built-in case takes manual 10 ms
LOAD_TIMEOUT = 120.0  # seconds for a worker to start and import the candidate (torch alone takes seconds)


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Worker:
    """One worker process (a warden and the worker it forked, see :func:`serve`): a pipe for tasks (pickled by
    the checker), a pipe for replies (:func:`send_reply`'s data-only frames, read without blocking so that a
    worker that writes half a reply cannot hang us, each frame's size and head checked against the case before
    its body is read), and a log file for its stdout and stderr."""

    def __init__(self, ctx, ref: tuple, timeout: float):
        self.ref = ref
        self.tasks_in, self.tasks = ctx.Pipe(duplex=False)
        self.replies, replies_out = ctx.Pipe(duplex=False)
        fd, self.log = tempfile.mkstemp(prefix="bptt-worker-", suffix=".log")
        os.close(fd)
        self.proc = ctx.Process(target=serve, args=(self.tasks_in, replies_out, ref, self.log), daemon=False)
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
                    head = parse_head(bytes(self.frame[8:8 + hl]))
                    self.head, self.hl = self._check(head, len(self.frame) - 8 - hl), hl
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
            check_calls(head, self.expect, body)
        return head

    def _advance(self, kind: str) -> None:
        """The worker's state once a whole reply of ``kind`` is in: loaded; took its task; answered it."""
        if kind == "ready":
            self.ready = True
        elif kind == "took":
            self.started = True
        elif kind == "done":
            self.task, self.last, self.started = None, self.task, False

    def ask(self) -> None:
        """Ask the worker to end (a None task): it returns, and its warden ends everything below it."""
        if self.proc.is_alive():
            try:
                self.tasks.send(None)
            except OSError:
                pass

    def tell(self) -> None:
        """Tell the warden to end the worker and everything below it now (SIGTERM)."""
        if self.proc.is_alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, kill: str = "") -> None:
        """End the worker and everything it started: asked, then told (5 s each), then, should the warden not
        answer, killed from here. ``kill``: why the checker ends it now rather than asking."""
        self.killed = self.killed or kill
        for step in (() if kill else (self.ask,)) + (self.tell,):
            step()
            self.proc.join(5.0)
        if self.proc.is_alive():  # the warden itself is stuck: what can be reached from here
            for pid in descendants(self.proc.pid):
                kill_pid(pid)
            kill_pid(self.proc.pid)
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
    pending, workers, loaded = deque(range(n)), [], False
    with _Adopting() as orphans, _terminated_as_exit():
        try:
            while pending or any(w.task is not None for w in workers):
                busy = sum(w.task is not None for w in workers)
                while len(workers) < min(jobs, len(pending) + busy):
                    workers.append(_Worker(ctx, ref, max(timeout, LOAD_TIMEOUT)))
                    orphans.known |= set(_children())  # the warden (and multiprocessing's resource tracker)
                for w in workers:
                    if w.ready and w.task is None and pending and not w.broken:
                        i = pending.popleft()
                        if w.give(i, task(i)):
                            w.deadline = time.monotonic() + timeout
                        else:  # gone between cases: case i never ran (see _bury)
                            w.task, w.broken = i, True
                now = time.monotonic()
                deadline = min((w.deadline for w in workers if w.waited_on), default=now + timeout)
                wait([w.replies for w in workers] + [w.proc.sentinel for w in workers],
                     timeout=min(max(0.0, deadline - now), 60.0))
                for w in list(workers):
                    loaded = loaded or w.ready
                    if _attend(w, done, timeout, pending, task, loaded):
                        workers.remove(w)
                        w.close(stream)
                        orphans.end()
            stop_all(workers)  # asked to stop, a worker ends with status 0; one that died already fails its last case
            for w in workers:
                if w.proc.exitcode != 0 and w.last is not None:
                    done(w.last, Outcome(error=f"the worker process died after answering this case: {w.why_dead()}"))
        finally:
            stop_all(workers, polite=False)
            for w in workers:
                w.close(stream)
            orphans.end()


def stop_all(workers: list, polite: bool = True) -> None:
    """Stop every worker at once, not one after another: all asked (when ``polite``), then all told, 5 s each,
    then whatever is left killed."""
    for step in ((_Worker.ask,) if polite else ()) + (_Worker.tell,):
        end = time.monotonic() + 5.0
        for w in workers:
            step(w)
        for w in workers:
            w.proc.join(max(0.0, end - time.monotonic()))
    for w in workers:
        w.stop(kill=w.killed or ("" if polite else "the run was stopped"))


def _children() -> list[int]:
    """This process's children, from /proc (empty elsewhere)."""
    return descendants(os.getpid(), depth=1)


class _Adopting:
    """While the checker runs workers it is a child subreaper (Linux): processes of a candidate whose warden was
    killed (by the candidate itself) are re-parented to the checker instead of init, and ``end`` kills them and
    everything below them. ``known``: the checker's own children, never touched."""

    def __enter__(self):
        self.known, self.was = set(_children()), subreaper(None)
        if self.was is False:
            subreaper(True)
        return self

    def end(self) -> None:
        for pid in _children():
            if pid not in self.known:
                for below in [*descendants(pid), pid]:
                    kill_pid(below)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def __exit__(self, *exc):
        if self.was is False:
            subreaper(False)
        return False


class _terminated_as_exit:
    """SIGTERM to the checker (in the main thread) ends it like Ctrl-C would: its workers are stopped first."""

    def __enter__(self):
        import threading

        self.before = None
        if threading.current_thread() is threading.main_thread():
            self.before = signal.signal(signal.SIGTERM, _exit_143)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            signal.signal(signal.SIGTERM, self.before)
        return False


def _exit_143(signum, frame):
    raise SystemExit(128 + signal.SIGTERM)


def load_remedy(ref: tuple, error: str = "") -> str:
    """What to run to see why the candidate ``ref`` does not load: its own module named, and for a missing
    function the names the module has."""
    module, _, func = ref[1].partition(":") if ref[0] == "spec" else ("", "", "")
    if not module:  # a function pickled by reference: its module is the caller's own
        return "define the candidate at module level in an importable module, or pass isolate=False"
    if "AttributeError" in error and f"attribute {func!r}" in error:
        return (f"{module} has no {func!r}: check FUNCTION in MODULE:FUNCTION; `python -c 'import {module}; "
                f"print(dir({module}))'` lists its names")
    return f"`python -c 'import {module}'` shows the full error at import; fix it and rerun"


def _attend(w: _Worker, done: Callable[[int, Outcome], None], timeout: float, pending: deque,
            task: Callable[[int], tuple], loaded: bool) -> bool:
    """Read what worker ``w`` said, or bury it; True when it is gone. ``loaded``: whether a worker of this run
    has loaded the candidate (then one that cannot load it again fails the next case, not the run)."""
    try:
        replies, open_ = w.read()
        for head, body in replies:
            if head["kind"] == "load-error":
                raise CandidateError(f"the candidate could not be loaded in a worker process: {head['error']}",
                                     load_remedy(w.ref, head["error"]))
            if head["kind"] == "done":
                done(head["task"], Outcome(read_arrays(head, body), head["error"], list(head.get("notes", [])),
                                           head.get("skipped", "")))
    except ReplyError as e:  # something in the worker wrote to our pipe: it can no longer be trusted
        w.stop(kill=f"the worker process sent a malformed reply ({e}): the candidate wrote to the checker's pipe")
        if not w.ready and not loaded:
            raise CandidateError(f"the candidate could not be loaded in a worker process: malformed reply ({e})") \
                from None
        _bury(w, done, pending, task)
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
    if not w.ready and not loaded:
        why = w.why_dead()
        if why == GUARD_REMEDY:
            raise CandidateError(f"the candidate could not be run: {GUARD_REMEDY}.")
        if not why.startswith("loading"):
            why = "loading it " + why
        raise CandidateError(f"the candidate could not be loaded in a worker process: {why}", load_remedy(w.ref))
    _bury(w, done, pending, task)
    return True


def _bury(w: _Worker, done: Callable[[int, Outcome], None], pending: deque, task: Callable[[int], tuple]) -> None:
    """A stopped worker's death is the failure of the case it holds: the one it runs, or else (between cases,
    or handed a case it never started, which goes back to the queue) the one it answered last; a fresh worker
    that could not load the candidate again (an earlier one did), the next case."""
    why = w.why_dead()
    if not w.ready:
        if pending:
            i = pending.popleft()
            task(i)  # the case is prepared (and so judged) like any other
            done(i, Outcome(error=f"a fresh worker process could not load the candidate again: {why}"))
        return
    if w.task is not None and (w.started or w.last is None):
        i, w.task = w.task, None
        done(i, Outcome(error=why))
        return
    if w.task is not None:
        pending.appendleft(w.task)
        w.task = None
    if w.last is not None:
        done(w.last, Outcome(error=f"the worker process died after answering this case: {why}"))


__all__ = ["DEFAULT_TIMEOUT", "LOAD_TIMEOUT", "default_jobs", "run_isolated", "stop_all"]
