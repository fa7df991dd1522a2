"""One chunk's partial sums and sample rows as bytes, for the worker that merges a look
(``analysis.sharded``; issue #42).

The format is plain data, never pickle (a blob is read back from Redis, which other processes
write): ``PLS1``, the length of a JSON header, the header, then the numeric arrays' raw bytes
one after another. The header holds every scalar, string and tuple (tagged ``{"t": [...]}``
so that a partial's ``settings`` compare equal after the round trip), and for each array its
dtype (with its byte order), shape and place in the body. Floats go through JSON's shortest
repr, so they come back bit for bit; an array of labels (``object`` of strings) is one
fixed-width unicode buffer, any other ``object`` array a list in the header. An exception a
partial stands for is its class's name and message, rebuilt only as one of the analysis
errors or ``ValueError``.

What decodes is what was encoded, bit for bit (tests/unit/analysis/test_sharded.py).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import errors
from analysis.estimators.sums import ArmSums, MeansPartial, PartsMismatch, SumPartial

_MAGIC = b"PLS1"
_ERRORS: dict[str, type[Exception]] = {
    c.__name__: c
    for c in (
        errors.AnalysisError,
        errors.PanelError,
        errors.InferenceError,
        errors.ConvergenceError,
        errors.NotEstimable,
        PartsMismatch,
        ValueError,
    )
}


class BadPartial(errors.AnalysisError):
    """A stored partial that is not one this version wrote (another format, cut short)."""


@dataclass
class ChunkPart:
    """What one chunk of one look gives the merging worker: its partials
    (``analysis.chunked.ChunkSums``) and the long rows of its sampled products."""

    sums: Any  # analysis.chunked.ChunkSums (imported lazily: chunked imports this module)
    rows: pd.DataFrame | None


class _Writer:
    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.at = 0

    def array(self, a: np.ndarray) -> dict[str, Any]:
        a = np.asarray(a)
        if a.dtype == object:
            flat = a.ravel().tolist()
            if flat and all(type(v) is str and not v.endswith("\0") for v in flat):
                # labels as fixed-width unicode: one buffer, not a JSON list
                return {"labels": self.array(np.array(flat, dtype=str)), "shape": list(a.shape)}
            return {"o": [self.value(v) for v in flat], "shape": list(a.shape)}
        raw = np.ascontiguousarray(a).tobytes()
        self.body.append(raw)
        self.at += len(raw)
        return {
            "a": self.at - len(raw),
            "n": len(raw),
            "dtype": a.dtype.str,
            "shape": list(a.shape),
        }

    def value(self, v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return {"arr": self.array(v)}
        if isinstance(v, tuple):
            return {"t": [self.value(x) for x in v]}
        if isinstance(v, np.generic):
            return v.item()
        if v is None or isinstance(v, bool | int | float | str):
            return v
        raise TypeError(f"cannot encode {type(v).__name__} in a partial")


class _Reader:
    def __init__(self, body: memoryview) -> None:
        self.body = body

    def array(self, d: dict[str, Any]) -> np.ndarray:
        if "labels" in d:
            labels = self.array(d["labels"])
            if labels.dtype.kind != "U":
                raise BadPartial("a stored partial's labels are not text")
            return labels.astype(object).reshape(d["shape"])
        if "o" in d:
            out = np.empty(len(d["o"]), dtype=object)
            out[:] = [self.value(v) for v in d["o"]]
            return out.reshape(d["shape"])
        a, n = int(d["a"]), int(d["n"])
        if a < 0 or a + n > len(self.body):
            raise BadPartial("a stored partial is cut short")
        dtype = np.dtype(d["dtype"])
        if dtype.hasobject:
            raise BadPartial("a stored partial holds objects")
        return np.frombuffer(self.body[a : a + n], dtype=dtype).reshape(d["shape"]).copy()

    def value(self, v: Any) -> Any:
        if isinstance(v, dict):
            if "t" in v:
                return tuple(self.value(x) for x in v["t"])
            if "arr" in v:
                return self.array(v["arr"])
            raise BadPartial(f"unknown value in a stored partial: {sorted(v)}")
        return v


def _partial(w: _Writer, p: Any) -> dict[str, Any]:
    if isinstance(p, Exception):
        return {"kind": "error", "class": type(p).__name__, "message": str(p)}
    if isinstance(p, MeansPartial):
        s = p.sums
        return {
            "kind": "means",
            "sums": [w.array(x) for x in (s.keys, s.n1, s.n0, s.s1, s.s0)],
            "units": None if p.units is None else w.array(p.units),
            "periods": w.array(p.periods),
            "cells": int(p.cells),
            "settings": w.value(p.settings),
            "period_additive": bool(p.period_additive),
            "all_units": int(p.all_units),
            "seen": None if p.seen is None else w.array(p.seen),
        }
    if isinstance(p, SumPartial):
        return {
            "kind": "sum",
            "x_sum": float(p.x_sum),
            "bound": float(p.bound),
            "n": int(p.n),
            "n1": int(p.n1),
            "n0": int(p.n0),
            "all_units": int(p.all_units),
            "seen": w.array(p.seen),
            "settings": w.value(p.settings),
            "period_additive": bool(p.period_additive),
        }
    raise TypeError(f"cannot encode a partial of type {type(p).__name__}")


def _unpartial(r: _Reader, d: dict[str, Any]) -> Any:
    kind = d.get("kind")
    if kind == "error":
        cls = _ERRORS.get(str(d.get("class")), errors.AnalysisError)
        return cls(str(d.get("message", "")))
    if kind == "means":
        keys, n1, n0, s1, s0 = (r.array(x) for x in d["sums"])
        return MeansPartial(
            ArmSums(keys, n1, n0, s1, s0),
            None if d["units"] is None else r.array(d["units"]),
            r.array(d["periods"]),
            int(d["cells"]),
            r.value(d["settings"]),
            bool(d["period_additive"]),
            int(d["all_units"]),
            None if d["seen"] is None else r.array(d["seen"]),
        )
    if kind == "sum":
        return SumPartial(
            float(d["x_sum"]),
            float(d["bound"]),
            int(d["n"]),
            int(d["n1"]),
            int(d["n0"]),
            int(d["all_units"]),
            r.array(d["seen"]),
            r.value(d["settings"]),
            bool(d["period_additive"]),
        )
    raise BadPartial(f"unknown partial kind {kind!r}")


def _rows(w: _Writer, df: pd.DataFrame) -> list[dict[str, Any]]:
    cols = []
    for name in df.columns:
        s = df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            col: dict[str, Any] = {"name": name, "codes": w.array(s.cat.codes.to_numpy())}
            if name != "product":  # the experiment's products: the reader has them
                cats = s.cat.categories
                col["categories"] = w.array(np.asarray(cats, dtype=object))
                col["strings"] = str(cats.dtype) == "str"  # pandas' string dtype, not object
        elif isinstance(s.dtype, pd.DatetimeTZDtype) or np.issubdtype(s.dtype, np.datetime64):
            tz = getattr(s.dtype, "tz", None)
            naive = s if tz is None else s.dt.tz_convert("UTC").dt.tz_localize(None)
            col = {
                "name": name,
                "ns": w.array(naive.to_numpy()),
                "tz": None if tz is None else str(tz),
            }
        else:
            col = {"name": name, "values": w.array(s.to_numpy())}
        cols.append(col)
    return cols


def _unrows(
    r: _Reader, cols: list[dict[str, Any]], product: Callable[[], pd.CategoricalDtype]
) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in cols:
        name = col["name"]
        if "codes" in col:
            codes = r.array(col["codes"])
            if name == "product":
                dtype = product()
            else:
                dtype = pd.CategoricalDtype(
                    pd.Index(
                        list(r.array(col["categories"])),
                        dtype="str" if col.get("strings") else object,
                    )
                )
            data[name] = pd.Categorical.from_codes(codes, dtype=dtype)
        elif "ns" in col:
            idx = pd.DatetimeIndex(r.array(col["ns"]))
            data[name] = idx if col["tz"] is None else idx.tz_localize("UTC").tz_convert(col["tz"])
        else:
            data[name] = r.array(col["values"])
    return pd.DataFrame(data)


def encode_part(part: ChunkPart) -> bytes:
    """One chunk's part as bytes (see the module's docstring)."""
    w = _Writer()
    head = {
        "parts": [
            [label, metric, _partial(w, p)] for (label, metric), p in part.sums.parts.items()
        ],
        "control": {m: [float(s), int(c)] for m, (s, c) in part.sums.control.items()},
        "missed": sorted(part.sums.missed),
        "rows": None if part.rows is None else _rows(w, part.rows),
    }
    header = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack(">I", len(header)), header, *w.body])


def decode_part(blob: bytes, product: Callable[[], pd.CategoricalDtype]) -> ChunkPart:
    """The part :func:`encode_part` wrote; ``product()`` gives the dtype of the experiment's
    product labels (the rows' product codes index them)."""
    from analysis.chunked import ChunkSums

    if len(blob) < 8 or blob[:4] != _MAGIC:
        raise BadPartial("a stored partial of another format")
    (n,) = struct.unpack(">I", blob[4:8])
    try:
        head = json.loads(bytes(blob[8 : 8 + n]))
    except ValueError as exc:
        raise BadPartial(f"a stored partial's header does not parse: {exc}") from None
    r = _Reader(memoryview(blob)[8 + n :])
    try:
        if not isinstance(head, dict) or not isinstance(head.get("parts"), list):
            raise TypeError("its header is not a part's")
        sums = ChunkSums(
            parts={(str(lab), str(m)): _unpartial(r, d) for lab, m, d in head["parts"]},
            control={m: (float(s), int(c)) for m, (s, c) in head["control"].items()},
            missed=frozenset(int(k) for k in head.get("missed", ())),
        )
        rows = None if head["rows"] is None else _unrows(r, head["rows"], product)
    except BadPartial:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, struct.error) as exc:
        # a header of the right magic but not this version's layout (another version's
        # worker, or damage): one part refused, never the whole cycle
        raise BadPartial(f"a stored partial does not decode: {type(exc).__name__}: {exc}") from None
    return ChunkPart(sums, rows)
