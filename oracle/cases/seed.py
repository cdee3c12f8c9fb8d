"""The built-in case matrix: named, seeded, deterministic.

A case's name reads ``topology/activation/loss/T17-B3-D4-H5-O3/dtype``; select
cases by substring of it. Inputs depend on the name without the dtype, so the
float32 case holds the float64 case's numbers rounded to float32, and its
truth is computed in float64 from those rounded numbers.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import numpy as np

from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from contract.errors import BadValue
from oracle.cases.select import select  # noqa: F401 - the selection, where callers have always found it
from oracle.groundtruth import seed_run as run  # manual.gradients' signature on a case's inputs

DTYPES = ("float64", "float32")
# (T, B, D, H, O): from one step to a long sequence, a few batch and hidden sizes
SHAPES = ((1, 1, 3, 4, 2), (2, 3, 4, 5, 3), (17, 3, 4, 5, 3), (64, 8, 6, 16, 4), (256, 2, 3, 8, 3))


class Named:
    """What a case's name gives every class of case: its file name and the seed of its inputs."""

    @property
    def file_stem(self) -> str:
        """The name as a file name: '/' becomes '__'."""
        return self.name.replace("/", "__")

    def spec(self) -> dict:
        """Every field of the case by name (a golden file's ``case`` metadata; what ``supports()`` is given)."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def seed(self) -> int:
        """The inputs' seed: the name without the dtype, so a float32 case holds the float64 one's numbers."""
        return zlib.crc32(self.name.rsplit("/", 1)[0].encode())


@dataclass(frozen=True)
class Case(Named):
    topology: str
    activation: str
    loss: str
    T: int
    B: int
    D: int
    H: int
    O: int
    dtype: str = "float64"

    @classmethod
    def parse(cls, name: str) -> Case:
        """The case a full name describes, e.g. ``many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64``."""
        parts = name.split("/")
        form = "topology/activation/loss/T<int>-B<int>-D<int>-H<int>-O<int>/dtype"
        try:
            top, act, loss, tag, dtype = parts
            dims = dict(zip("TBDHO", (int(v[1:]) for v in tag.split("-")), strict=True))
            assert [v[0] for v in tag.split("-")] == list("TBDHO") and min(dims.values()) >= 1
        except (ValueError, AssertionError):
            raise BadValue(f"case name must read {form}; got {name!r}. Remedy: e.g. "
                             "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64") from None
        for what, value, choices in (("topology", top, TOPOLOGIES), ("activation", act, ACTIVATIONS),
                                     ("loss", loss, LOSSES), ("dtype", dtype, DTYPES)):
            if value not in choices:
                raise BadValue(f"case {what} must be one of {choices}; got {value!r} in {name!r}. "
                                 "Remedy: pick one of the names listed.")
        return cls(top, act, loss, **dims, dtype=dtype)

    @property
    def shape_tag(self) -> str:
        return f"T{self.T}-B{self.B}-D{self.D}-H{self.H}-O{self.O}"

    @property
    def name(self) -> str:
        return f"{self.topology}/{self.activation}/{self.loss}/{self.shape_tag}/{self.dtype}"

    @property
    def kwargs(self) -> dict:
        return {"activation": self.activation, "loss": self.loss, "topology": self.topology}

    def inputs(self, dtype: str | None = None) -> dict:
        """``params``, ``x``, ``target``, ``h0`` as NumPy arrays in ``dtype`` (the case's by default).

        Float64 inputs are the case's numbers rounded to the case's dtype and
        widened back, i.e. exactly what the truth is computed on.
        """
        rng = np.random.default_rng(self.seed)
        T, B, D, H, O = self.T, self.B, self.D, self.H, self.O
        params = {
            "Wxh": rng.normal(0, 1 / np.sqrt(D), (H, D)),  # (H, D)
            "Whh": rng.normal(0, 0.9 / np.sqrt(H), (H, H)),  # (H, H), spectral radius ≈ 0.9
            "bh": rng.normal(0, 0.1, H),  # (H,)
            "Why": rng.normal(0, 1 / np.sqrt(H), (O, H)),  # (O, H)
            "by": rng.normal(0, 0.1, O),  # (O,)
        }
        x = rng.normal(0, 1, (B, D) if self.topology == "one-to-many" else (T, B, D))
        lead = () if self.topology == "many-to-one" else (T,)
        if self.loss == "cross_entropy":
            target = rng.integers(0, O, lead + (B,))  # (…, B) int64
        elif self.loss == "bce":
            target = rng.uniform(0, 1, lead + (B, O))  # (…, B, O)
        else:
            target = rng.normal(0, 1, lead + (B, O))  # (…, B, O)
        h0 = rng.normal(0, 0.5, (B, H))  # (B, H)

        def cast(a):
            a = a.astype(self.dtype)  # round to the case's dtype …
            return a.astype(dtype or self.dtype)  # … then to the dtype asked for

        out = {"params": {k: cast(v) for k, v in params.items()}, "x": cast(x), "h0": cast(h0)}
        out["target"] = target if self.loss == "cross_entropy" else cast(target)
        return out

    # ------------------------------------------------------------ the Case protocol (oracle.cases)

    kind = "seed"  # the golden schema's word for this class; nothing branches on it
    group = "seed model"  # its group in a run's summary (oracle.summary)
    prefix = ""  # the start of every name of this class (oracle.cases.parse_case)
    optional = ("h", "z")  # per-step internals: judged when a candidate gives them
    not_needed = ()  # gradients the case does not ask for (the seed model asks for every one)

    @staticmethod
    def map_arrays(f, inputs: dict, every: bool = False) -> dict:
        """``inputs`` with ``f`` applied to every float array (and, ``every``, to cross-entropy's integer
        targets too)."""
        g = lambda a: a if a is None or not (every or np.issubdtype(a.dtype, np.floating)) else f(a)  # noqa: E731
        return {"params": {k: g(v) for k, v in inputs["params"].items()}, "x": g(inputs["x"]),
                "target": g(inputs["target"]), "h0": g(inputs["h0"])}

    def cast(self, inputs: dict, dtype: str | None = None) -> dict:
        """Float inputs in ``dtype`` (the case's by default), NumPy."""
        return self.map_arrays(lambda a: a.astype(dtype or self.dtype), inputs)

    def call(self, fn, inputs: dict) -> dict:
        """``fn`` with ``manual.gradients``' signature on this case's inputs."""
        return run(fn, inputs, self.kwargs)

    def truth(self, inputs: dict):
        """The float64 truth (``oracle.groundtruth.Truth``) on ``inputs`` cast to the case's dtype, as judged."""
        from oracle.groundtruth import truth

        return truth(self.cast(inputs), self.kwargs)

    def judged(self, grads: dict) -> dict:
        """A gradient set as the truth holds it (the seed model's: as it is)."""
        return grads

    def check_layout(self, layout: str) -> str:
        """The layout this case's tensors take when ``layout`` is asked (LayoutError for an unknown one): the
        seed model's names are the same in every layout, and its files are torch's."""
        from oracle.layouts import check_layout

        check_layout(layout)
        return "torch"

    def expected_grads(self, layout: str = "torch") -> dict:
        """name → the shapes a candidate's gradient may have (the same in every layout)."""
        return {k: [v] for k, v in self.grad_shapes().items()}

    def report_in(self, report, layout: str):
        """``report`` as the candidate reads it (the seed model has one layout)."""
        return report

    def from_candidate(self, grads: dict, layout: str, notes: list | None = None) -> tuple[dict, dict]:
        """(a candidate's gradient set as the truth holds it, {name: why} of tensors to fail by their shape)."""
        return grads, {}

    def grad_shapes(self) -> dict:
        """name → shape of every gradient (and so of sens and amp)."""
        T, B, D, H, O = self.T, self.B, self.D, self.H, self.O
        return {"Wxh": (H, D), "Whh": (H, H), "bh": (H,), "Why": (O, H), "by": (O,), "h0": (B, H),
                "x": (B, D) if self.topology == "one-to-many" else (T, B, D), "h": (T, B, H), "z": (T, B, H)}

    # ------------------------------------------------------------ its golden file (oracle.files.golden)

    def file_shapes(self) -> dict:
        """name → (shape, allowed safetensors dtypes) of every tensor of its golden file."""
        from contract import GRAD_NAMES, PARAM_NAMES

        g = self.grad_shapes()
        lead = () if self.topology == "many-to-one" else (self.T,)
        target = ((*lead, self.B), {"I64"}) if self.loss == "cross_entropy" else ((*lead, self.B, self.O), {"F64"})
        out = {f"params.{k}": (g[k], {"F64"}) for k in PARAM_NAMES}
        out.update({"inputs.x": (g["x"], {"F64"}), "inputs.h0": (g["h0"], {"F64"}), "inputs.target": target})
        for prefix in ("grads", "sens", "amp"):
            out.update({f"{prefix}.{k}": (g[k], {"F64"}) for k in GRAD_NAMES})
        return out

    def file_tensors(self, inputs: dict, truth) -> dict:
        """The tensors of its golden file, named as :meth:`file_shapes` names them."""
        from contract import GRAD_NAMES, PARAM_NAMES

        tensors = {f"params.{k}": inputs["params"][k] for k in PARAM_NAMES}
        tensors.update({"inputs.x": inputs["x"], "inputs.h0": inputs["h0"], "inputs.target": inputs["target"]})
        for prefix, d in (("grads", truth.grads), ("sens", truth.sens), ("amp", truth.amp)):
            tensors.update({f"{prefix}.{k}": d[k] for k in GRAD_NAMES})
        return tensors

    def from_tensors(self, t: dict) -> tuple[dict, object]:
        """(inputs, truth) from its golden file's tensors: the inverse of :meth:`file_tensors`."""
        from contract import GRAD_NAMES, PARAM_NAMES
        from oracle.groundtruth import Truth

        inputs = {"params": {k: t[f"params.{k}"] for k in PARAM_NAMES}, "x": t["inputs.x"], "h0": t["inputs.h0"],
                  "target": t["inputs.target"]}
        return inputs, Truth(*({k: t[f"{p}.{k}"] for k in GRAD_NAMES} for p in ("grads", "sens", "amp")))

    def float_tensors(self, inputs: dict) -> dict:
        """file name → every float input (what must be a number of the case's dtype)."""
        out = {f"params.{k}": v for k, v in inputs["params"].items()}
        out.update({f"inputs.{k}": inputs[k] for k in ("x", "h0", "target") if inputs[k].dtype.kind == "f"})
        return out

    def check_inputs(self, inputs: dict) -> None:
        """The contract's checks (finite, classes in range) on ``inputs`` in the case's dtype."""
        from contract import check_inputs

        low = self.cast(inputs)
        check_inputs(low["params"], low["x"], low["target"], low["h0"], **self.kwargs)

    @classmethod
    def from_spec(cls, spec: dict, max_dim: int) -> Case:
        """The case a golden file's metadata describes; ValueError naming the field that is wrong."""
        spec_choices(spec, {"topology": TOPOLOGIES, "activation": ACTIVATIONS, "loss": LOSSES, "dtype": DTYPES})
        dims = {key: spec_int(spec, key, max_dim) for key in ("T", "B", "D", "H", "O")}
        return cls(spec["topology"], spec["activation"], spec["loss"], **dims, dtype=spec["dtype"])

    def fd_small(self) -> bool:
        """Small enough for finite differences at export (two losses per entry differenced)."""
        from oracle.policy import FD_MAX_PARAMS

        T, B, D, H, O = self.T, self.B, self.D, self.H, self.O
        return H * D + H * H + H + O * H + O + B * H + T * B * D <= FD_MAX_PARAMS and T <= 17

    def fd_errors(self, grads: dict, inputs: dict) -> dict:
        from oracle.fd import fd_errors

        return fd_errors(grads, inputs, self.kwargs)

    @property
    def manual_name(self) -> str:
        return "manual.gradients"

    def manual(self, inputs: dict) -> dict:
        import manual

        return self.call(manual.gradients, inputs)

    def autograd(self, inputs: dict) -> dict:
        """Autograd in the inputs' own dtype and device (``reference.gradients``)."""
        import reference

        return self.call(reference.gradients, inputs)


def spec_choices(spec: dict, choices: dict) -> None:
    """Each named field of a golden file's metadata one of its choices, or ValueError."""
    for key, allowed in choices.items():
        if spec.get(key) not in allowed:
            raise BadValue(f"metadata case.{key} is {spec.get(key)!r}, expected one of {allowed}")


def spec_int(spec: dict, key: str, high: int) -> int:
    """An integer field of a golden file's metadata in [1, high], or ValueError."""
    v = spec.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= high:
        raise BadValue(f"metadata case.{key} is {v!r}, expected an integer in [1, {high}]")
    return v


def all_cases(dtypes=DTYPES, shapes=SHAPES) -> list[Case]:
    """Every topology × activation × loss × shape × dtype."""
    return [
        Case(top, act, loss, *shape, dtype=dt)
        for top, act, loss, shape, dt in itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES, shapes, dtypes)
    ]
