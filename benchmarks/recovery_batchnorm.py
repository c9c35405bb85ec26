"""Data-free recovery from BatchNorm statistics against synthesized inputs and the
calibration data, on the trained digits ResNet-56 exported with its BatchNorms kept
(models/digits/export_keep_bn.py), without fine-tuning, in one run:

    python benchmarks/recovery_batchnorm.py

l1 channels, uniform, with Torch-Pruning's rounding (as benchmarks/recovery_digits.py),
ratios 0.1-0.4; one plan per ratio, recovered five ways: none; `batchnorm` (bias
compensation from the running statistics: no data, no run); `synthetic` (least squares
on 256 synthesized inputs); `bias` and `ls` on the 256 calibration samples of
digits_calib.npz. Accuracy on the 360 held-out test samples; the seconds of gathering
the statistics and refitting (the rewrite and verification not counted) against one ONNX
Runtime forward pass of the calibration set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from recovery_digits import DIGITS, forward_seconds, tp_rounding

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.recover import plan_recovery
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled

RATIOS = (0.1, 0.2, 0.3, 0.4)
MODES = ("none", "batchnorm", "synthetic", "bias", "ls")


def recovered(path: str, ratio: float, mode: str, calib) -> tuple[object, float, float, int]:
    """(pruned model, MACs removed, seconds of statistics + refit, layers refit) for l1
    channels at `ratio`."""
    ws = Workspace(path, Options(calibration=calib if mode in ("bias", "ls") else None, recover=mode))
    removed = tp_rounding(ws.analysis, class_scores(ws.analysis, "l1")[0], ratio)
    macs = 1 - ws.predict(removed, [])["macs"] / ws.cost_before().total_macs
    start = time.perf_counter()
    recovery, _ = plan_recovery(ws, removed, [], False) if mode != "none" else (None, None)
    gathered = time.perf_counter() - start
    ws.rewrite(removed, [], slice_channels=True)
    start = time.perf_counter()
    if recovery is not None:
        recovery.apply(ws.model)
    seconds = gathered + time.perf_counter() - start
    refit = sum(r["refit"] is not None for r in recovery.records) if recovery is not None else 0
    return ws.model, macs, seconds, refit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    path = os.path.join(DIGITS, "digits_resnet56_bn.onnx")
    test = load_labelled(os.path.join(DIGITS, "digits_test.npz"))
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), load_model(path), batch_size=256)
    forward = forward_seconds(path, calib)
    base = accuracy(load_model(path), *test)
    title = (f"digits ResNet-56 with BatchNorm kept (test accuracy {100 * base:.2f} % before; no fine-tuning). "
             "Accuracy % (seconds of statistics + refit, × one forward pass of the 256 calibration samples, "
             f"{forward:.3f} s; layers refit):")
    lines = [title, "",
             "| ratio | MACs −% | " + " | ".join(MODES) + " |", "|---:|---:|" + "---|" * len(MODES)]
    for ratio in RATIOS:
        cells, macs = [], 0.0
        for mode in MODES:
            model, macs, seconds, refit = recovered(path, ratio, mode, calib)
            acc = 100 * accuracy(model, *test)
            cells.append(f"{acc:.1f}" if mode == "none" else f"{acc:.1f} ({seconds:.2f} s, {seconds / forward:.1f}×; {refit})")
        lines.append(f"| {ratio} | {100 * macs:.1f} | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
