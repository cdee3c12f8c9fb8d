"""Judging cases on a pool of machines: each case one Ray task, isolated exactly as on this machine.

``run_ray`` keeps the contract of :func:`oracle.checker.isolate.run_isolated`
(``task(i)`` called here just before case i is handed out, ``done(i, outcome)``
for each result, ``CandidateError`` when the candidate cannot be loaded at all)
but hands each case to a Ray task, at most ``jobs`` in flight.

The Ray task does not call the candidate: it calls ``run_isolated`` on its one
case, so the candidate still runs in its own warden and worker process, with
the deadline, the bounded reply and the process clean-up of a local run. A
crash, an exit or a hang is that case's failure, with the same reason, and the
Ray worker itself lives on (it is never the candidate's process; ``max_retries=0``:
a case is never run twice behind the checker's back). What the task sends back
is the reply's own data-only frame (``oracle.checker.wire.encode``), read here by
``read_arrays`` as ``run_isolated`` reads a worker's: the driver gets the same
Outcomes, arrays and bfloat16 tensors, as a local run gives. The worker's
output comes back as text and is written to ``stream`` as ``run_isolated``
writes it. A Ray-level failure (the Ray worker or its node died) is that case's
failure. Each case pays for a fresh worker process (spawn, and loading the
candidate): the price of one case never seeing another's state.

The driver's ``BPTT_BACKEND`` (which manual backend a local worker inherits)
goes with each task. A local instance (``address`` None or "local") is started
with this process's ``sys.path`` in its workers' ``PYTHONPATH``, so a candidate
module importable here is importable there; on a cluster the candidate's module
(and this project) must be installed on every node.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping

from contract.errors import BadValue
from oracle.checker.candidate import CandidateError, Outcome
from oracle.checker.isolate import DEFAULT_TIMEOUT, run_isolated
from oracle.checker.processes import descendants, kill, stop_if_importing_main, subreaper
from oracle.checker.wire import BF16_LABEL, encode, parse_head, read_arrays

FORWARDED_ENV = ("BPTT_BACKEND",)  # what a local worker inherits from the checker and a case's result depends on
STOP_WAIT = 20.0  # seconds for a cancelled task's run_isolated to stop its worker process
CANCEL_GRACE = 2.0  # seconds the driver gives cancelled tasks for that, before it shuts Ray down or leaves it
LOCAL = "local"  # the address that starts a Ray instance on this machine (as None does)
_LOADED_PREFIX = "the candidate could not be loaded in a worker process: "


def run_ray(ref: tuple, n: int, task: Callable[[int], tuple], done: Callable[[int, Outcome], None], *,
            address: str | None = None, jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT,
            num_gpus: float = 0, stream=None) -> None:
    """Run the candidate ``ref`` on tasks 0 … n−1 as Ray tasks, up to ``jobs`` at once (default: the cluster's
    CPUs), each running :func:`run_isolated` on its one case; the contract is ``run_isolated``'s.

    ``address``: None or "local" starts a local Ray instance (``jobs`` CPUs, default all), shut down at the end;
    otherwise ``ray.init(address=address)`` (e.g. ``ray://head:10001``). An instance already initialised in this
    process is used as it is. ``num_gpus``: the GPUs (or a fraction) each task reserves. Raises ``BadValue`` when
    Ray is not installed, ``CandidateError`` when the candidate cannot be loaded at all.
    """
    stop_if_importing_main()
    if n <= 0:
        _import_ray()
        return
    with session(address, jobs) as ray, _terminated_as_exit():
        _gpus_exist(ray, num_gpus)
        jobs = max(1, min(jobs or _slots(ray, num_gpus), n))
        _drive(ray, ref, n, task, done, jobs=jobs, timeout=timeout, num_gpus=num_gpus, stream=stream or sys.stderr)


@contextlib.contextmanager
def session(address: str | None = None, jobs: int | None = None) -> Iterator[object]:
    """Ray, connected for the block (the ``ray`` module): for a caller that makes many :func:`run_ray` calls of a
    few cases each (``bptt fuzz``), which then share one instance instead of starting one each. ``address`` and
    ``jobs`` as for ``run_ray``; an instance already initialised is used as it is, and only one this call
    started is shut down at the end."""
    ray = _import_ray()
    with _adopting() if address in (None, LOCAL) and not ray.is_initialized() else contextlib.nullcontext():
        started = _connect(ray, address, jobs)
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()


@contextlib.contextmanager
def _adopting() -> Iterator[None]:
    """This process a child subreaper (Linux) while the local Ray instance it starts runs, as ``run_isolated``'s
    checker is: a case's worker process whose warden was killed with its Ray worker (Ray ends a dead worker's
    children with SIGKILL) comes to this process, which ends it and everything below it once the instance is
    shut down (and whatever of Ray's own is left). Nothing of a candidate outlives the run."""
    known, was = set(descendants(os.getpid(), depth=1)), subreaper(None)
    if was is False:
        subreaper(True)
    try:
        yield
    finally:
        for pid in set(descendants(os.getpid(), depth=1)) - known:
            _end(pid)
        if was is False:
            subreaper(False)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BadValue("--ray needs Ray, which is not installed",
                       "pip install 'bptt-reference[ray]', or run without --ray (local worker processes)") from None
    return ray


def _connect(ray, address: str | None, jobs: int | None) -> bool:
    """Connect to Ray unless this process already is; True when this call started the instance it uses."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # the checker's stderr stays its own
    if address in (None, LOCAL):
        ray.init(num_cpus=jobs, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}},
                 **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:  # what ray.init raises for an address it cannot use
        raise BadValue(f"--ray {address}: no Ray cluster could be reached there ({_chain(e)})",
                       "start one with `ray start --head` and pass its address (ray://HEAD:10001, or HEAD:6379 on "
                       "one of its nodes; RAY_AUTH_MODE=token where it asks for a token), or --ray alone for a "
                       "local instance") from None
    return True


def _pythonpath() -> str:
    """This process's ``sys.path`` (the current folder for ''), then any ``PYTHONPATH`` it was given: what a
    local Ray worker needs to import what this process can."""
    entries = [os.path.abspath(p or os.curdir) for p in sys.path]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(entries))


def _gpus_exist(ray, num_gpus: float) -> None:
    """Refuse a GPU share the cluster cannot give: Ray would wait for it without end."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if num_gpus > 0 and gpus < num_gpus:
        raise BadValue(f"each case asks for {num_gpus:g} GPU(s) (--num-gpus) and the Ray cluster has {gpus:g}: "
                       "no case could start", "--num-gpus 0, or a cluster whose nodes have GPUs")


def _slots(ray, num_gpus: float) -> int:
    """Tasks the cluster can run at once: its CPUs, and, when each task takes GPUs, its GPUs' share."""
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1))
    if num_gpus > 0:
        slots = min(slots, int(resources.get("GPU", 0) / num_gpus))
    return max(slots, 1)


def _drive(ray, ref: tuple, n: int, task: Callable[[int], tuple], done: Callable[[int, Outcome], None], *,
           jobs: int, timeout: float, num_gpus: float, stream) -> None:
    """Hand out cases 0 … n−1, at most ``jobs`` in flight, and deliver each result as it comes (``ray.wait``)."""
    remote = ray.remote(num_gpus=num_gpus, max_retries=0)(run_case)
    env = {k: os.environ.get(k) for k in FORWARDED_ENV}
    inflight: dict = {}
    given, answered = 0, False
    try:
        while given < n or inflight:
            while given < n and len(inflight) < jobs:
                inflight[remote.remote(ref, task(given), timeout, env)] = given
                given += 1
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)  # in steps: Ctrl-C and SIGTERM act
            for result in ready:
                answered = _deliver(ray, result, inflight.pop(result), done, stream, answered)
    finally:
        _stop(ray, list(inflight))


def _stop(ray, pending: list) -> None:
    """Cancel the cases still running (an error, Ctrl-C or SIGTERM here), and give their tasks a moment to end
    their worker processes (:func:`_interruptible`) before Ray is shut down or left: a Ray worker that Ray ends
    first takes its case's warden with it (SIGKILL), and a candidate below it would run on (see
    :func:`_adopting` for the local instance)."""
    for result in pending:
        ray.cancel(result)
    if pending:
        time.sleep(CANCEL_GRACE)  # a cancelled task's result is there at once: it says nothing of its processes


def _deliver(ray, result, i: int, done: Callable[[int, Outcome], None], stream, answered: bool) -> bool:
    """Case i's result to ``done`` (and its worker's output to ``stream``); whether a case has been answered
    (a candidate that loaded once and not again fails this case, as a fresh local worker would; before that,
    a load failure is the run's ``CandidateError``)."""
    try:
        kind, payload, text = ray.get(result)
    except ray.exceptions.RayError as e:
        done(i, Outcome(error=_ray_failure(e)))
        return answered
    if text:
        stream.write(text)
    if kind == "load-error":
        why, remedy = payload
        if not answered:
            raise CandidateError(why, remedy)
        done(i, Outcome(error=f"a fresh worker process could not load the candidate again: "
                              f"{why.removeprefix(_LOADED_PREFIX)}"))
        return answered
    for head, body in payload:
        done(i, _outcome(head, body))
    return True


def _ray_failure(e: Exception) -> str:
    """A Ray-level failure as the case's reason: the task raised (it could not run there), or its Ray worker or
    node died."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):  # a RayTaskError: e.g. this project is not installed on that node
        return (f"the Ray task that ran this case raised {type(cause).__name__}: {_first_line(cause)} (are this "
                "project and the candidate's module installed on every node?)")
    return (f"the Ray task that ran this case failed ({type(e).__name__}: {_first_line(e)}): its Ray worker or "
            "node died; the case was not retried")


def _chain(e: BaseException, depth: int = 3) -> str:
    """An exception and its causes, each in its first line (a refused token is the cause of ray.init's error)."""
    here = f"{type(e).__name__}: {_first_line(e)}"
    return here if e.__cause__ is None or depth <= 1 else f"{here}; {_chain(e.__cause__, depth - 1)}"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _outcome(head: bytes, body: bytes) -> Outcome:
    """An Outcome from a frame :func:`run_case` made, read as ``run_isolated`` reads a worker's reply (arrays
    are views of one writable buffer; bfloat16 names torch bfloat16 tensors again)."""
    h = parse_head(head)
    return Outcome(read_arrays(h, memoryview(bytearray(body))), h["error"], list(h.get("notes", [])),
                   h.get("skipped", ""))


def run_case(ref: tuple, work: tuple, timeout: float, env: Mapping[str, str | None]) -> tuple[str, object, str]:
    """On a Ray worker: ``run_isolated`` on one case ``work`` = (case, inputs, expect). Returns ("done", a frame
    per Outcome, the worker's output) or ("load-error", (why, remedy), the worker's output)."""
    got: list = []  # the Outcomes, or the CandidateError, or whatever else ended run_isolated
    printed = io.StringIO()

    def case() -> None:
        try:
            run_isolated(ref, 1, lambda _: work, lambda _, o: got.append(o), jobs=1, timeout=timeout,
                         stream=printed)
        except BaseException as e:  # noqa: BLE001 - handed to the task's own thread, below
            got.append(e)

    with _environment(env), _main_not_rerun(), _terminated_as_exit():
        _interruptible(case)
    if got and isinstance(got[-1], CandidateError):
        return "load-error", (got[-1].why, got[-1].remedy), printed.getvalue()
    if got and isinstance(got[-1], BaseException):
        raise got[-1]
    return "done", [_frame(o, work[-1]) for o in got], printed.getvalue()


def _interruptible(case: Callable[[], None]) -> None:
    """``case`` in a thread, this one waiting on it in short steps. Ray cancels a task by raising in its thread
    between two bytecodes, which a thread blocked in ``run_isolated``'s wait (up to a minute) would reach only
    when the wait ends; here it comes at once, and the worker processes this process started (their wardens)
    are told to end (each ends its worker and everything below it), so ``run_isolated`` returns; then the
    cancellation goes on up."""
    thread = threading.Thread(target=case, name="bptt-case", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except BaseException:
        for warden in mp.active_children():
            try:
                os.kill(warden.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        thread.join(STOP_WAIT)
        raise


def _frame(o: Outcome, expect: Mapping) -> tuple[bytes, bytes]:
    """An Outcome as the wire's data-only reply (head, body): bfloat16 tensors labelled float32 again, a stand-in
    of another shape as its shape alone."""
    head, parts = encode("done", 0, o.error, tuple(_labelled(g) for g in o.grads), o.notes, expect,
                         skipped=o.skipped)
    return head, b"".join(parts)


def _labelled(grads: dict) -> dict:
    """The inverse of ``wire.restore``: torch bfloat16 tensors as float32 arrays (exact), their names listed."""
    out, bf16 = {}, []
    for k, v in grads.items():
        if hasattr(v, "detach"):
            out[k] = v.float().numpy()
            bf16.append(k)
        else:
            out[k] = v
    if bf16:
        out[BF16_LABEL] = bf16
    return out


def _end(pid: int) -> None:
    """Kill this process's child ``pid`` and everything below it, and reap them all: each comes to this process
    (a subreaper) as the one above it is reaped (parents come before their children in ``descendants``)."""
    below = descendants(pid)
    for p in [*below, pid]:
        kill(p)
    for p in [pid, *below]:
        try:
            os.waitpid(p, 0)
        except ChildProcessError:  # not (or no longer) this process's child
            pass


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM ends the block as Ctrl-C does, with exit status 143 (``run_isolated``'s): the cases in flight are
    stopped first (:func:`_stop`, :func:`_interruptible`). Ray's own handler would end the process at once, and
    Ray's ``wait`` turns the exception into ``SystemExit(1)``: the status is set again here. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def on_term(signum, frame) -> None:
        got.append(signum)
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except BaseException:
        if got:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)  # None: a handler of Ray's C++


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """A blank ``__main__`` while the case's worker process starts: a Ray worker's main module is Ray's own
    worker script, which spawn would otherwise run again in the worker process (importing Ray: seconds and
    hundreds of modules the candidate never asked for; a local worker starts without them)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextlib.contextmanager
def _environment(env: Mapping[str, str | None]) -> Iterator[None]:
    """The driver's values of ``env``'s names (None: unset) in this process while a case runs, then the old ones."""
    before = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            _setenv(k, v)
        yield
    finally:
        for k, v in before.items():
            _setenv(k, v)


def _setenv(k: str, v: str | None) -> None:
    if v is None:
        os.environ.pop(k, None)
    else:
        os.environ[k] = v


__all__ = ["LOCAL", "run_ray", "session"]
