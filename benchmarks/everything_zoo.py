"""Everything-at-once on the bundled digits model and the zoo: the emitted model is
verified (checker + ONNX Runtime), and its measured ORT latency (batch 1, 1 thread,
median of 200 runs) is printed next to its MAC speed-up, measured in this run.
Zoo models get random calibration data (their weights are random too): this checks
validity and speed, not accuracy.

    python benchmarks/everything_zoo.py [--target 0.5] [--samples 64]
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np

from onnxprune.compiler.everything import prune_everything
from onnxprune.compiler.target import Target
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.session import measure_latency

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args()
    paths = [os.path.join(ROOT, "models", "digits", "digits_resnet.onnx")]
    paths += sorted(glob.glob(os.path.join(ROOT, "models", "zoo", "*.onnx")))
    print(f"target −{100 * args.target:.0f} % MACs, {args.samples} calibration samples\n")
    print("| model | iterations (blocks / channel steps) | MACs −% | MAC speed-up | ORT latency speed-up | verified |")
    print("|---|---|---:|---:|---:|---|")
    for path in paths:
        model = load_model(path)
        name = os.path.basename(path)
        shape = resolve_input_shapes(model, None)[model.graph.inputs[0].name]
        if "digits" in name:
            calib = load_calibration(os.path.join(ROOT, "models", "digits", "digits_calib.npz"), model, samples=args.samples)
        else:
            x = np.random.default_rng(0).standard_normal((args.samples, *shape[1:])).astype(np.float32)
            calib = load_calibration(x, model)
        try:
            result = prune_everything(path, calib, target=Target(flops=args.target), progress=False, measure=False)
        except Exception as err:  # report and go on: one model must not hide the others
            print(f"| {name} | failed: {str(err).splitlines()[0][:80]} | | | | |")
            continue
        r = result.report
        one = {model.graph.inputs[0].name: calib.feeds()[model.graph.inputs[0].name][:1]}
        speed = measure_latency(model, one, runs=200) / measure_latency(result.model, one, runs=200)
        red = r["cost"]["macs_reduction"]
        print(f"| {name} | {len(r['iterations'])} ({r['chosen']['layers']} / {r['chosen']['neurons']}) | {100 * red:.1f} "
              f"| {1 / max(1 - red, 1e-9):.2f}x | {speed:.2f}x | {'yes' if r['verification']['ok'] else 'NO'} |")


if __name__ == "__main__":
    main()
