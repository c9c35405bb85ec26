"""Verify a pruned model: it passes the ONNX checker, keeps the original's interface,
runs in ONNX Runtime producing outputs of the same names, dtypes and shapes, and — where
the numbers are known in advance — computes them: with nothing removed, the original's
outputs; with an exact removal, the outputs of the original with the removed channels'
consumers zeroed and the dropped blocks' branches multiplied by 0 (`Expected`).

What this does not do: judge accuracy. An inexact removal (LayerNorm, Softmax, a
reduction over removed channels) changes the numbers on purpose: its differences are
reported for information only, and `checks` says the values were not compared.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Collection, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import (
    declared_input_shapes,
    graph_inputs,
    make_sample_inputs,
    prefers_file,
    resolve_input_shapes,
    save_model,
    to_proto,
)
from onnxprune.runtime.session import ort_session, run_session

# Domains the ONNX checker has schemas for; full_check runs strict shape inference,
# which fails on ops it has no schema for (com.microsoft), so those get the light check.
_CHECKER_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"})


@dataclasses.dataclass
class OutputComparison:
    """One graph output before and after pruning. Diffs are None when not comparable."""

    name: str
    dtype_before: str | None
    dtype_after: str | None
    shape_before: tuple[int, ...] | None
    shape_after: tuple[int, ...] | None
    max_abs_diff: float | None = None
    # max |after - before| / max |before|: a scale-free size of the change, not a verdict.
    rel_diff: float | None = None


@dataclasses.dataclass
class VerifyResult:
    ok: bool
    checker_ok: bool
    outputs: list[OutputComparison]
    message: str
    checks: list[str] = dataclasses.field(default_factory=list)  # what was checked, in words


@dataclasses.dataclass
class Expected:
    """The outputs the pruned model must reproduce: those of `model` (None: the original
    itself) on the original's inputs, cut to the kept indices of resized outputs
    (`interface`), within `rtol` of each output's largest magnitude. `what` names them."""

    what: str
    model: ir.Model | None = None
    interface: list[dict] = dataclasses.field(default_factory=list)
    rtol: float = 1e-4


def take_kept(arrays: dict, interface: list[dict], direction: str) -> dict:
    """Arrays for the original interface cut to the pruned one (e.g. a KV cache the
    caller holds), using the kept indices the report lists per changed axis."""
    out = dict(arrays)
    for change in interface:
        if change["direction"] == direction and change["name"] in out:
            for axis, kept in change["kept"].items():
                out[change["name"]] = np.take(out[change["name"]], kept, axis=int(axis))
    return out


def verify_model(
    original: ir.Model,
    pruned: ir.Model,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    seed: int = 0,
    raise_on_failure: bool = True,
    resized: Collection[str] = (),
    feeds: Mapping[str, np.ndarray] | None = None,
    pruned_feeds: Mapping[str, np.ndarray] | None = None,
    expected: Expected | None = None,
    unchecked_values: str = "values not compared",
    original_path: str | None = None,
) -> VerifyResult:
    """Check `pruned` against `original`; raise OnnxPruneError when not ok (by default).

    Passes when: the ONNX checker accepts `pruned`; graph inputs match exactly in name,
    dtype and declared shape (dim_params included); and both models run in ONNX Runtime
    on the same `make_sample_inputs` data and produce the same output names, dtypes and
    shapes. Inputs and outputs named in `resized` (a pruned KV cache, outputs the user
    allowed to shrink) must keep name, dtype, rank and symbolic dims; their static dims
    may differ, and the pruned model is fed inputs of its own declared sizes.
    `feeds` replaces the random inputs (for models that need consistent ones, e.g.
    sequence lengths); `pruned_feeds` then gives the pruned model's (default: the same).
    With `expected`, the outputs must also equal those; without, `unchecked_values` says
    why the values were not compared. `original_path`, the file `original` was read
    from, lets ONNX Runtime read it directly. Neither model is modified.
    """
    problems: list[str] = []
    checker_error = _checker_error(pruned)
    if checker_error and _checker_error(original) is not None:
        # The input already fails the checker (e.g. GroupNormalization-18, deprecated
        # in onnx 1.16 but run by ONNX Runtime): judge the pruned model by running it.
        checker_error = None
    if checker_error:
        problems.append(f"ONNX checker: {checker_error}")
    resized = frozenset(resized)
    interface = _interface_problems(original, pruned, resized)
    problems.extend(interface)
    outputs: list[OutputComparison] = []
    checks = ["ONNX checker", "same interface"]
    if not interface:
        # The original's outputs come from the reference when there is one (it has the
        # original's interface): one run and one session less, for large models too.
        baseline = expected.model if expected is not None and expected.model is not None else (original_path or original)
        outputs, run_problems, results = _run_and_compare(
            original, pruned, input_shapes, seed, resized, feeds, pruned_feeds, baseline
        )
        problems.extend(run_problems)
        checks.append("runs in ONNX Runtime with outputs of the original's names, dtypes and shapes")
        if expected is not None and not run_problems:
            problems.extend(_compare_values(results, expected))
            checks.append(f"values equal {expected.what} (within {expected.rtol:g} relative)")
        elif expected is None:
            checks.append(unchecked_values)
    ok = not problems
    message = "ok" if ok else "; ".join(problems)
    result = VerifyResult(ok=ok, checker_ok=checker_error is None, outputs=outputs, message=message, checks=checks)
    if not ok and raise_on_failure:
        raise OnnxPruneError(f"pruned model failed verification: {message}")
    return result


def _checker_error(model: ir.Model) -> str | None:
    """The checker's complaint about `model` (first line), or None when it passes.

    Runs full_check (strict shape inference). For models with ops outside the domains
    ONNX has schemas for, a full_check failure is retried with the light check, since
    inference cannot type those ops' outputs.
    """
    standard = all(domain in _CHECKER_DOMAINS for domain in model.opset_imports)
    error = _run_checker(model, full_check=True)
    if error is not None and not standard:
        error = _run_checker(model, full_check=False)
    return error


def _run_checker(model: ir.Model, *, full_check: bool) -> str | None:
    try:
        if not prefers_file(model):
            onnx.checker.check_model(to_proto(model), full_check=full_check)
        else:
            # Over 2 GB the checker reads only from a path; external weights stay on disk.
            with tempfile.TemporaryDirectory(prefix="onnxprune-check-") as tmp:
                path = os.path.join(tmp, "model.onnx")
                save_model(model, path, external_data=True)
                onnx.checker.check_model(path, full_check=full_check)
    except Exception as err:  # ValidationError, InferenceError, or a C++ error surfaced as-is
        lines = str(err).strip().splitlines()
        return lines[0] if lines else type(err).__name__
    return None


def _interface_problems(original: ir.Model, pruned: ir.Model, resized=frozenset()) -> list[str]:
    problems = []
    before = [(v.name, _dtype(v), _declared(v, v.name in resized)) for v in graph_inputs(original)]
    after = [(v.name, _dtype(v), _declared(v, v.name in resized)) for v in graph_inputs(pruned)]
    if before != after:
        problems.append(f"graph inputs changed from {_describe(before)} to {_describe(after)}")
    before_out = [(v.name, _dtype(v)) for v in original.graph.outputs]
    after_out = [(v.name, _dtype(v)) for v in pruned.graph.outputs]
    if before_out != after_out:
        problems.append(f"graph outputs changed from {before_out} to {after_out}")
    return problems


def _run_and_compare(original, pruned, input_shapes, seed, resized=frozenset(), feeds=None, pruned_feeds=None,
                     baseline=None):
    if feeds is None:
        shapes = resolve_input_shapes(original, input_shapes)
        feeds = make_sample_inputs(original, shapes, seed=seed)
        pruned_feeds = make_sample_inputs(pruned, declared_input_shapes(pruned, shapes), seed=seed) if resized else feeds
    elif pruned_feeds is None:
        pruned_feeds = feeds
    results = {"feeds": feeds}
    for label, model, data in (("original", baseline or original, feeds), ("pruned", pruned, pruned_feeds)):
        try:
            results[label] = run_session(ort_session(model), data)
        except OnnxPruneError as err:
            return [], [f"{label} model: {err}"], results
    comparisons, problems = [], []
    for name in results["original"]:
        a, b = results["original"][name], results["pruned"].get(name)
        row = OutputComparison(
            name=name,
            dtype_before=str(a.dtype),
            dtype_after=None if b is None else str(b.dtype),
            shape_before=tuple(a.shape),
            shape_after=None if b is None else tuple(b.shape),
        )
        if b is None:
            problems.append(f"output '{name}' is missing")
        elif name in resized:
            if (row.dtype_before, a.ndim) != (row.dtype_after, b.ndim):
                problems.append(f"output '{name}' is {row.dtype_after}{list(row.shape_after)}, expected "
                                f"{row.dtype_before} of rank {a.ndim}")
        elif (row.dtype_before, row.shape_before) != (row.dtype_after, row.shape_after):
            problems.append(
                f"output '{name}' is {row.dtype_after}{list(row.shape_after)}, "
                f"expected {row.dtype_before}{list(row.shape_before)}"
            )
        elif a.size and a.dtype.kind in "biufcV":  # "V": ml_dtypes such as bfloat16
            before, after = a.astype(np.float64), b.astype(np.float64)
            row.max_abs_diff = float(np.abs(after - before).max())
            row.rel_diff = row.max_abs_diff / max(float(np.abs(before).max()), 1e-12)
        comparisons.append(row)
    return comparisons, problems, results


def _compare_values(results: dict, expected: Expected) -> list[str]:
    """Problems where the pruned model's float outputs differ from `expected`'s (which
    ran in place of the original)."""
    want = take_kept(results["original"], expected.interface, "output")
    problems = []
    for name, a in want.items():
        b = results["pruned"].get(name)
        if b is None or a.shape != b.shape or not a.size or a.dtype.kind not in "fcV":
            continue  # shapes were judged above; integer outputs (indices) are not compared
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(float(np.abs(a64[np.isfinite(a64)]).max(initial=0.0)), 1e-12)
        same_nan = np.array_equal(np.isnan(a64), np.isnan(b64))
        diff = float(np.nan_to_num(np.abs(b64 - a64), nan=0.0, posinf=np.inf).max()) / scale
        if not same_nan or diff > expected.rtol:
            problems.append(
                f"output '{name}' differs from {expected.what} by {diff:.3g} of its magnitude "
                f"(allowed {expected.rtol:g}): the removal was not as exact as the analysis claims"
            )
    return problems


def _dtype(value: ir.Value) -> str | None:
    return None if value.dtype is None else value.dtype.name


def _declared(value: ir.Value, resizable: bool = False) -> tuple | None:
    """Declared dims; a resizable value's static dims read as "static" (any size)."""
    if value.shape is None:
        return None
    return tuple(
        ("static" if resizable else d) if isinstance(d, int) else (d.value or "?") for d in value.shape
    )


def _describe(signature: list) -> str:
    return ", ".join(f"{name}:{dtype}{list(shape) if shape is not None else '[?]'}" for name, dtype, shape in signature)


__all__ = ["Expected", "OutputComparison", "VerifyResult", "take_kept", "verify_model"]
