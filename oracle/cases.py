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

DTYPES = ("float64", "float32")
# (T, B, D, H, O): from one step to a long sequence, a few batch and hidden sizes
SHAPES = ((1, 1, 3, 4, 2), (2, 3, 4, 5, 3), (17, 3, 4, 5, 3), (64, 8, 6, 16, 4), (256, 2, 3, 8, 3))


@dataclass(frozen=True)
class Case:
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
            raise ValueError(f"case name must read {form}; got {name!r}. Remedy: e.g. "
                             "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64") from None
        for what, value, choices in (("topology", top, TOPOLOGIES), ("activation", act, ACTIVATIONS),
                                     ("loss", loss, LOSSES), ("dtype", dtype, DTYPES)):
            if value not in choices:
                raise ValueError(f"case {what} must be one of {choices}; got {value!r} in {name!r}. "
                                 "Remedy: pick one of the names listed.")
        return cls(top, act, loss, **dims, dtype=dtype)

    @property
    def shape_tag(self) -> str:
        return f"T{self.T}-B{self.B}-D{self.D}-H{self.H}-O{self.O}"

    @property
    def name(self) -> str:
        return f"{self.topology}/{self.activation}/{self.loss}/{self.shape_tag}/{self.dtype}"

    @property
    def file_stem(self) -> str:
        """The name as a file name: '/' becomes '__'."""
        return self.name.replace("/", "__")

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.rsplit("/", 1)[0].encode())

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


def run(fn, inputs: dict, kwargs: dict) -> dict:
    """``fn`` (manual.gradients' signature) on ``inputs`` (params, x, target, h0) with activation/loss/topology."""
    return fn(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


def all_cases(dtypes=DTYPES, shapes=SHAPES) -> list[Case]:
    """Every topology × activation × loss × shape × dtype."""
    return [
        Case(top, act, loss, *shape, dtype=dt)
        for top, act, loss, shape, dt in itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES, shapes, dtypes)
    ]


def select(cases: list[Case], pattern: str | None) -> list[Case]:
    """Cases whose name contains ``pattern`` (all when it is empty or None)."""
    return [c for c in cases if not pattern or pattern in c.name]
