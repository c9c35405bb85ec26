"""Every method on every fixture exported the way people export them (models/frameworks,
models/fixed_batch, models/detection, models/quantized): MACs removed, or the exit code
and its reason. Calibration data: 16 seeded random samples shaped like the input.

    python benchmarks/frameworks.py [--samples 16]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from onnxprune.cli import main as cli

MODELS = Path(__file__).resolve().parents[1] / "models"
FOLDERS = ("frameworks", "fixed_batch", "detection", "quantized")


def _inputs(path: Path, samples: int) -> tuple[list[str], dict[str, np.ndarray]]:
    proto = onnx.load(path, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    flags, calib, rng = [], {}, np.random.default_rng(0)
    for value in proto.graph.input:
        if value.name in inits:
            continue
        tt = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if any(d is None for d in dims[1:]):
            flags += ["--input-shape", f"{value.name}=" + ",".join(str(d or (1 if a == 0 else 5)) for a, d in enumerate(dims))]
        shape = [samples if dims[0] is None else dims[0] * samples] + [d or 5 for d in dims[1:]]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        calib[value.name] = (
            (np.ones(shape, dtype) if "mask" in value.name else rng.integers(0, 50, shape).astype(dtype))
            if dtype.kind in "iu" else rng.standard_normal(shape).astype(dtype)
        )
    return flags, calib


def _cell(path: Path, args: list[str], tmp: str) -> str:
    report = os.path.join(tmp, "r.json")
    if os.path.exists(report):
        os.remove(report)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli(["prune", str(path), "-o", os.path.join(tmp, "o.onnx"), "--report", report, *args])
    if code in (0, 3):
        with open(report) as f:
            cut = json.load(f)["cost"]["macs_reduction"]
        return f"{100 * cut:.1f}{' (exit 3: target out of reach)' if code == 3 else ''}"
    return f"exit {code}: {err.getvalue().strip()[len('onnxprune: error: '):][:60]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=16)
    args = ap.parse_args()
    paths = sorted(p for folder in FOLDERS for p in (MODELS / folder).rglob("*.onnx"))
    print("| model | `--ratio 0.5` MACs −% | `layers --target-flops 0.3` | `everything --target-flops 0.3` |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            flags, calib = _inputs(path, args.samples)
            data = os.path.join(tmp, "calib.npz")
            np.savez(data, **calib)
            cka = ["--calib", data, "--target-flops", "0.3", "--samples", str(args.samples), *flags]
            cells = [_cell(path, ["--ratio", "0.5", *flags], tmp), _cell(path, ["--method", "layers", *cka], tmp),
                     _cell(path, ["--method", "everything", *cka], tmp)]
            print(f"| {path.relative_to(MODELS)} | " + " | ".join(cells) + " |", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
