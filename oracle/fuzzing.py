"""`bptt fuzz` and ``oracle.fuzz``: random configurations judged like any case, a failure shrunk by hypothesis.

Each example is a case with a name (``oracle.cases``), drawn from hypothesis
strategies: T from 1 to long, B, and sizes from 1, odd, and one either side
of the block widths kernels tile by; layers, directions, batch_first, bias,
projection, the cell's forms; lengths with rows of length 1; which upstream
gradients drive it; which inputs need a gradient (``-noinputgrad``,
``-nohxgrad``: a candidate that names ``needs_input_grad`` is told); inputs
scaled toward saturation (``-sat4``); float64 or float32. It is judged by
the same truth, bound and isolation as ``bptt check``. A candidate's
``Unsupported`` rejects the example (the search moves away from it). On a
failure hypothesis shrinks the case, smaller sizes and fewer features first,
to the smallest configuration that still fails, and the run prints its name:
``bptt export --case NAME`` makes it a golden case, ``bptt check --case NAME``
replays it. Failures are kept in hypothesis's example database (one folder
per candidate, model, cell and layout), so a rerun starts from them.
"""

from __future__ import annotations

import io
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.cells import CELLS
from contract.errors import BadValue
from contract.spec import FORGET_GATES
from oracle.cases.module import ALL_DTYPES, CELL_STATE_UPSTREAMS, LENGTHS, ModuleCase
from oracle.cases.select import builtin_parts, compile_expression, in_shard, parse_shard
from oracle.checker.candidate import Outcome
from oracle.checker.isolate import DEFAULT_TIMEOUT, run_isolated
from oracle.checker.run import CaseResult, judge, make_runner, prepare
from oracle.precision import LOW

BLOCKS = (16, 32, 64, 128)  # the widths kernels tile sizes by
EDGES = tuple(sorted({b + d for b in BLOCKS for d in (-1, 0, 1)}))  # one either side of each block, and the block
# Each dimension is drawn from an ascending list, so that hypothesis, which shrinks a choice toward the list's
# start, shrinks every size toward 1 (an either-or of two strategies does not cross from one to the other).
SIZES = (*range(1, 10), *EDGES)
STEPS = (*range(1, 9), *(e for e in EDGES if e > 9), 256)  # one step, a few, either side of each block, long
BATCH = (1, 2, 3, 4, 16, 17, 33)
MAX_ELEMENTS = 50_000  # gradient entries of one example: the truth's cost (autograd, unrolled) grows with it
DEFAULT_EXAMPLES = 200
DEFAULT_BUDGET = 600.0  # seconds of searching (shrinking a failure found in it always finishes)
DATABASE = Path(".hypothesis") / "bptt-fuzz"
MODELS = ("module", "seed", "recurrence")
WIDTHS = (*range(1, 9), 15, 16, 17, 31, 32, 33, 63, 64, 65)  # a recurrence's K and V: its state is K × V per head


def case_size(case) -> int:
    """How large a case is: its gradients' entries (what "no larger than" compares)."""
    return sum(math.prod(s) for s in case.grad_shapes().values())


def _sizes(choices: tuple = SIZES):
    from hypothesis import strategies as st

    return st.sampled_from(choices)


def module_cases(modes: tuple[str, ...], dtypes: tuple[str, ...]):
    """A hypothesis strategy of module cases of ``modes`` (see the module's docstring)."""
    from hypothesis import strategies as st

    @st.composite
    def draw(d):
        mode = d(st.sampled_from(modes))
        form = dict(d(st.sampled_from(CELLS[mode].forms)))
        shape = dict(num_layers=d(st.integers(1, 3)), bidirectional=d(st.booleans()), batch_first=d(st.booleans()),
                     bias=not d(st.booleans()), T=d(_sizes(STEPS)), B=d(_sizes(BATCH)), I=d(_sizes()),
                     H=d(_sizes()))
        if CELLS[mode].norms:  # a norm over one unit is constant: such a cell needs H ≥ 2
            shape["H"] = max(shape["H"], 2)
        form.pop("proj_size", None)  # drawn whole instead: any P in 0 … H − 1
        if "proj_size" in CELLS[mode].options and shape["H"] > 1 and not form.get("zoneout"):
            form["proj_size"] = d(st.integers(0, shape["H"] - 1))
        form.pop("num_heads", None)  # drawn whole instead: any divisor of H, and either forget gate
        if "num_heads" in CELLS[mode].options:
            form["num_heads"] = d(st.sampled_from([n for n in range(1, shape["H"] + 1) if shape["H"] % n == 0]))
            form["forget_gate"] = d(st.sampled_from(FORGET_GATES))
        ups = ("both", "output", "hn") + (CELL_STATE_UPSTREAMS if CELLS[mode].cell_state else ())
        more = dict(lengths=d(st.sampled_from(LENGTHS)), upstream=d(st.sampled_from(ups)),
                    dtype=d(st.sampled_from(dtypes)), scale=d(st.sampled_from((1, 4))),
                    input_grad=not d(st.booleans()), hx_grad=not d(st.booleans()))
        return ModuleCase(mode, **shape, **more, **form)

    return draw()


def seed_cases(dtypes: tuple[str, ...]):
    """A hypothesis strategy of the seed model's cases."""
    from hypothesis import strategies as st

    from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
    from oracle.cases.seed import Case

    return st.builds(Case, st.sampled_from(TOPOLOGIES), st.sampled_from(ACTIVATIONS), st.sampled_from(LOSSES),
                     _sizes(STEPS), _sizes(BATCH), _sizes(), _sizes(), _sizes(), dtype=st.sampled_from(dtypes))


def recurrence_cases(variants: tuple[str, ...], dtypes: tuple[str, ...]):
    """A hypothesis strategy of recurrence cases of ``variants``: sizes, grouped value heads, β per value channel,
    the L2 norm, the initial state given, differentiated or not, packed sequences, the upstream gradients."""
    from hypothesis import strategies as st

    from contract.recurrence import VARIANTS
    from oracle.cases.recurrence import INITIALS, UPSTREAMS, RecurrenceCase

    @st.composite
    def draw(d):
        variant = d(st.sampled_from(variants))
        T, packed = d(_sizes(STEPS)), d(st.booleans())
        B = d(st.integers(1, min(4, T - T // 16))) if packed else d(_sizes(BATCH))
        return RecurrenceCase(variant, T, B, d(st.integers(1, 3)), d(_sizes(WIDTHS)), d(_sizes(WIDTHS)),
                              groups=d(st.integers(1, 3)), beta_per_channel=VARIANTS[variant][1] and d(st.booleans()),
                              l2norm=d(st.booleans()), initial=d(st.sampled_from(INITIALS)), packed=packed,
                              upstream=d(st.sampled_from(("both", *UPSTREAMS[:2]))), dtype=d(st.sampled_from(dtypes)),
                              scale_factor=d(st.sampled_from((1, 2))))

    return draw()


@dataclass
class FuzzResult:
    examples: int = 0  # configurations judged or declined
    judged: int = 0
    skipped: int = 0  # the candidate's Unsupported
    ill_posed: int = 0  # configurations the reference itself cannot pass in their dtype: they judge nothing
    failure: CaseResult | None = None  # the smallest failing case hypothesis shrank to
    first_failing: str = ""  # the first failing case found, before shrinking
    seconds: float = 0.0
    found_after: float = 0.0  # seconds until the first failure
    shard: str | None = None
    candidate: str = "MODULE:FUNCTION"  # as `bptt check --candidate` takes it
    smallest: CaseResult | None = None  # the smallest failing case judged, whatever hypothesis made of it
    flaky: bool = False  # a configuration failed once and passed again: the report is the smallest seen
    layout: str = "torch"

    @property
    def exit_status(self) -> int:
        """0 no failure found, 1 a failure, 2 nothing judged (the candidate supported no example)."""
        return 1 if self.failure else 0 if self.judged else 2

    def summary(self) -> str:
        said = (f"{self.examples} examples ({self.judged} judged, {self.skipped} unsupported, {self.ill_posed} "
                f"past the dtype's resolution) in {self.seconds:.1f} s")
        if not self.failure:
            return f"fuzz: no failure in {said}"
        name = self.failure.case.name
        lay = "" if self.layout == "torch" else f" --layout {self.layout}"
        flaky = ("\nflaky: a configuration failed and then passed when hypothesis ran it again (state kept between "
                 "calls? a race?); shown: the smallest failing case seen, not shrunk further") if self.flaky else ""
        return (f"fuzz: FAIL after {self.found_after:.1f} s; {said}{flaky}\n"
                f"first failing: {self.first_failing}\nshrunk to:     {name}\n"
                f"make it a golden case: bptt export golden/{lay} --case {name}\n"
                f"replay it:             bptt check --candidate {self.candidate}{lay} --case {name}")

    def to_json(self) -> dict:
        return {"command": "fuzz", "ok": self.exit_status == 0, "shard": self.shard, "examples": self.examples,
                "judged": self.judged, "skipped": self.skipped, "seconds": self.seconds,
                "first_failing": self.first_failing, "cases": [self.failure.record()] if self.failure else []}


class _Failed(Exception):
    def __init__(self, result: CaseResult):
        super().__init__(result.case.name)
        self.result = result


class _Done(Exception):
    """The search has ended: the isolated runner stops."""


def _settings(max_examples: int, database):
    from hypothesis import HealthCheck, Verbosity, settings

    return settings(max_examples=max_examples, deadline=None, database=database, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)


def _search(strategy, judge_case: Callable, out: FuzzResult, *, max_examples: int, budget: float, seed, part,
            database, keep: Callable[[str], bool] | None = None) -> None:
    """Run hypothesis over ``strategy``; ``out`` gets the counts and the shrunk failure."""
    import hypothesis
    from hypothesis import errors, given, reject

    start = time.monotonic()

    @_settings(max_examples, database)
    @given(strategy)
    def probe(case):
        if part is not None and not in_shard(case.name, part) or case_size(case) > MAX_ELEMENTS or \
                keep is not None and not keep(case.name):
            reject()
        if not out.first_failing and time.monotonic() - start > budget:
            return  # past the budget: the search stops judging (a failure found in it is still shrunk)
        out.examples += 1
        result = judge_case(case)
        if result is None:  # past the format's resolution: no implementation can be told right from wrong here
            out.ill_posed += 1
            reject()
        if result.skipped:
            out.skipped += 1
            reject()  # unsupported: steer away, not a failure
        out.judged += 1
        if not result.ok:
            if not out.first_failing:
                out.first_failing, out.found_after = case.name, time.monotonic() - start
            if out.smallest is None or case_size(case) < case_size(out.smallest.case):
                out.smallest = result
            raise _Failed(result)

    if seed is not None:
        probe = hypothesis.seed(seed)(probe)
    try:
        probe()
    except _Failed as e:  # hypothesis replays the smallest failing example last
        out.failure = e.result
    except (errors.Unsatisfiable, errors.FailedHealthCheck):
        pass  # nothing judged: exit status 2
    except errors.Flaky:  # it failed, then passed on the same configuration: a candidate that keeps state or races
        out.flaky = True
    if out.failure is None and out.smallest is not None:  # a failure seen is never dropped
        out.failure, out.flaky = out.smallest, True


def fuzz(candidate: Callable | str, *, model: str = "module", cell: str | None = None, layout: str = "torch",
         dtypes: tuple[str, ...] = ("float64", "float32"), max_examples: int = DEFAULT_EXAMPLES,
         budget: float = DEFAULT_BUDGET, seed: int | None = None, shard: str | None = None, isolate: bool = True,
         timeout: float = DEFAULT_TIMEOUT, database: str | Path | None | bool = True, ray: str | None = None,
         num_gpus: float = 0, expression: str | None = None, variant: str | None = None) -> FuzzResult:
    """Search configurations for one where ``candidate`` is wrong; shrink it (see the module's docstring).

    ``model``: "module" (``manual.module_gradients``' signature; ``cell`` one
    mode, or every cell when None), "seed" (``manual.gradients``') or
    "recurrence" (``manual.recurrence_gradients``'; ``variant`` one of them,
    or every one when None).
    ``budget``: seconds of searching; ``max_examples``: at most this many
    examples. ``database``: True for ``.hypothesis/bptt-fuzz/<candidate…>``,
    a folder, or False/None for none. ``ray``: "local" or a Ray address: each
    example a Ray task (``oracle.checker.cluster``), isolated the same way.
    ``expression``: a ``-k`` expression (``oracle.cases.select``): only
    configurations whose names it selects.
    """
    strategy, db = _arguments(candidate, model, cell, layout, dtypes, max_examples, budget, database, variant)
    part = None if shard is None else parse_shard(shard)
    keep = None if not expression else compile_expression(expression, builtin_parts())
    out = FuzzResult(shard=shard, layout=layout, candidate=candidate if isinstance(candidate, str) else
                     f"{getattr(candidate, '__module__', 'MODULE')}:{getattr(candidate, '__qualname__', 'FUNCTION')}")
    start = time.monotonic()

    def search(judge_case):
        _search(strategy, judge_case, out, max_examples=max_examples, budget=budget, seed=seed, part=part,
                database=db, keep=keep)

    def prep(case):
        p = prepare(case, case.inputs(), layout=layout)
        return p if well_posed(p) else None

    if ray is not None:
        _by_ray(candidate, ray, timeout, num_gpus, prep, search)
    elif isolate:
        _isolated(candidate, timeout, prep, search)
    else:
        fn = make_runner(candidate, False)  # loads it, with the in-process remedy on failure
        search(lambda case: _one_in_process(fn, prep(case)))
    out.seconds = time.monotonic() - start
    return out


def well_posed(p) -> bool:
    """Whether a prepared case can tell a right answer from a wrong one: the reference computation in the case's
    dtype passes it (autograd in float32 and below, and manual too in bfloat16 and float16, where autograd is the
    rule's own reference; manual in float64, whose truth is autograd's). Saturated
    units make gradients that vanish below a format's resolution (σ'(a) rounds to 0 in float32 past a ≈ 16); on
    such a case every implementation is as far off as a wrong one, so it judges nothing and the search moves on."""
    reference = p.ref if p.ref is not None else p.case.manual(p.inputs)  # both as judged (time-major)
    report = p.want.compare(reference, dtype=p.case.dtype, ref=p.ref, optional=p.case.optional,
                            skip=p.case.not_needed)  # autograd passes its own allowance unless MAX_TOL caps it
    if report.ok and p.case.dtype in LOW:  # autograd is the low rule's reference, so it passes by construction:
        report = p.want.compare(_manual_in_dtype(p), dtype=p.case.dtype, ref=p.ref, optional=p.case.optional,
                                skip=p.case.not_needed)  # a second implementation in the dtype must pass too
    return report.ok


def _manual_in_dtype(p) -> dict:
    """manual computing in the case's low precision, as judged. Where it and autograd, both in that dtype,
    disagree past the rule (a relu pre-activation within a rounding of 0 takes the other side of the kink), the
    dtype cannot say which answer is right."""
    from oracle.judge import to_numpy

    return {k: to_numpy(v) for k, v in p.case.manual(p.case.in_dtype(p.inputs)).items()}


def _one_in_process(runner: Callable, p) -> CaseResult | None:
    if p is None:
        return None
    got: list[CaseResult] = []
    runner(1, lambda i: (p.case, p.inputs, p.expect), lambda i, o: got.append(judge(p, o)), None)
    return got[0]


def _by_ray(candidate, address: str, timeout: float, num_gpus: float, prep: Callable, search: Callable) -> None:
    """``search(judge_case)``, each example one Ray task, all in one Ray session."""
    from oracle.checker.candidate import reference_to
    from oracle.checker.cluster import run_ray, session
    from oracle.checker.processes import stop_if_importing_main

    stop_if_importing_main()
    ref = reference_to(candidate)

    def judge_case(case) -> CaseResult | None:
        p = prep(case)
        if p is None:
            return None
        got: list[CaseResult] = []
        run_ray(ref, 1, lambda i: (p.case, p.inputs, p.expect), lambda i, o: got.append(judge(p, o)),
                address=address, jobs=1, timeout=timeout, num_gpus=num_gpus, stream=io.StringIO())
        return got[-1]

    with session(address, 1):
        search(judge_case)


def _isolated(candidate, timeout: float, prep: Callable, search: Callable) -> None:
    """``search(judge_case)`` in a thread, its cases run by one worker process of ``run_isolated`` here."""
    from oracle.checker.candidate import reference_to
    from oracle.checker.processes import stop_if_importing_main

    stop_if_importing_main()
    ref = reference_to(candidate)
    todo, answers, failed = queue.Queue(), queue.Queue(), []
    prepared: dict = {}

    def judge_case(case) -> CaseResult | None:
        p = prep(case)
        if p is None:
            return None
        todo.put(p)
        return answers.get()

    def searching() -> None:
        try:
            search(judge_case)
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(e)
        finally:
            todo.put(None)

    def task(i: int) -> tuple:
        p = todo.get()
        if p is None:
            raise _Done
        prepared[i] = p
        return p.case, p.inputs, p.expect

    def done(i: int, outcome: Outcome) -> None:
        if i in prepared:  # (a worker that dies after answering fails that case again: already answered)
            answers.put(judge(prepared.pop(i), outcome))

    thread = threading.Thread(target=searching, daemon=True)
    thread.start()
    try:
        run_isolated(ref, 10**5, task, done, jobs=1, timeout=timeout, stream=io.StringIO())
    except _Done:
        pass
    thread.join()
    if failed:
        raise failed[0]


def _arguments(candidate, model, cell, layout, dtypes, max_examples, budget, database, variant=None) -> tuple:
    """(strategy, hypothesis database) for fuzz's arguments, or the ValueError naming the wrong one."""
    if model not in MODELS:
        raise BadValue(f"model must be one of {MODELS}; got {model!r}. Remedy: model='module'.")
    if variant is not None and model != "recurrence" or model == "recurrence" and cell is not None:
        raise BadValue(f"cell is for model='module' and variant for model='recurrence'; got model={model!r}, "
                       f"cell={cell!r}, variant={variant!r}. Remedy: e.g. model='recurrence', "
                       "variant='gated_delta_rule'.")
    if model == "recurrence":
        return _recurrence_arguments(candidate, variant, layout, dtypes, database)
    modes = tuple(CELLS) if cell is None else (cell,)
    if model == "module" and any(m not in CELLS for m in modes):
        raise BadValue(f"cell must be one of {tuple(CELLS)} or None; got {cell!r}. Remedy: e.g. cell='LSTM'.")
    if model == "seed" and (cell is not None or layout != "torch"):
        raise BadValue(f"the seed model has one cell and one layout; got cell={cell!r}, layout={layout!r}. "
                       "Remedy: leave them out with model='seed'.")
    allowed = ALL_DTYPES if model == "module" else ("float64", "float32")
    if not dtypes or any(d not in allowed for d in dtypes):
        raise BadValue(f"dtypes must be some of {allowed} for {model} cases; got {dtypes!r}. Remedy: "
                       "dtypes=('float64',).")
    if layout == "onnx":
        modes = tuple(m for m in modes if CELLS[m].onnx_gates is not None)
        if not modes:
            raise BadValue(f"cell {cell!r} has no ONNX operator. Remedy: --layout torch for it.")
    if not (isinstance(max_examples, int) and max_examples >= 1) or not (budget > 0):
        raise BadValue(f"max_examples must be a positive int and budget positive seconds; got {max_examples!r}, "
                       f"{budget!r}. Remedy: max_examples=200, budget=600.")
    strategy = module_cases(modes, tuple(dtypes)) if model == "module" else seed_cases(tuple(dtypes))
    if layout == "onnx":
        strategy = strategy.filter(lambda c: c.proj_size == 0 and not c.zoneout)  # neither has an ONNX form
    return strategy, _database(database, candidate, model, cell, layout)


def _recurrence_arguments(candidate, variant, layout, dtypes, database) -> tuple:
    """(strategy, database) for recurrence cases: ``variant`` one of them or None for all."""
    from contract.recurrence import VARIANTS
    from oracle.cases.recurrence import ALL_DTYPES as RECURRENCE_DTYPES

    if variant is not None and variant not in VARIANTS:
        raise BadValue(f"variant must be one of {tuple(VARIANTS)} or None; got {variant!r}. Remedy: e.g. "
                       "'gated_delta_rule'.")
    if not dtypes or any(d not in RECURRENCE_DTYPES for d in dtypes):
        raise BadValue(f"dtypes must be some of {RECURRENCE_DTYPES}; got {dtypes!r}. Remedy: dtypes=('float64',).")
    strategy = recurrence_cases(tuple(VARIANTS) if variant is None else (variant,), tuple(dtypes))
    return strategy, _database(database, candidate, "recurrence", variant, layout)


def _database(database, candidate, model: str, cell, layout: str):
    """hypothesis's example database: True for one folder per candidate, model, cell and layout."""
    from hypothesis.database import DirectoryBasedExampleDatabase

    if database is True:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{candidate if isinstance(candidate, str) else candidate.__module__}"
                                                f"-{model}-{cell or 'all'}-{layout}")
        database = DATABASE / slug
    return DirectoryBasedExampleDatabase(str(database)) if database else None


def parse_budget(text: str) -> float:
    """``"10m"``, ``"90s"``, ``"1h"`` or plain seconds → seconds; ValueError with a remedy."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text) if isinstance(text, str) else None
    if not m or float(m.group(1)) <= 0:
        raise BadValue(f"budget must read like 90s, 10m or 1h; got {text!r}. Remedy: --budget 10m.")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


__all__ = ["FuzzResult", "case_size", "fuzz", "module_cases", "parse_budget", "recurrence_cases", "seed_cases"]
