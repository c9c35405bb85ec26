"""One-pass against sequential least-squares recovery on the trained digits ResNets,
without fine-tuning, in one run:

    python benchmarks/recovery_sequential.py             # ResNet-56 and ResNet-110
    python benchmarks/recovery_sequential.py --depth 56

l1 channels, uniform, with Torch-Pruning's rounding (as benchmarks/recovery_digits.py),
ratios 0.1-0.5; recovery from the 256 calibration samples of digits_calib.npz: `ls`
fits every layer from the original's activations in one run; `sequential` fits them one
at a time from the pruned model's own input. Accuracy on the 360 held-out test samples,
and the seconds of the whole prune (rewrite, recovery, verification) against one ONNX
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

from onnxprune.compiler.channels import PlanStrategy
from onnxprune.compiler.driver import run
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, action="append", help="56 and/or 110 (default both)")
    args = ap.parse_args(argv)
    test = load_labelled(os.path.join(DIGITS, "digits_test.npz"))
    lines = ["| model | ratio | MACs −% | one pass: accuracy % (s) | sequential: accuracy % (s) |", "|---|---:|---:|---|---|"]
    for depth in args.depth or (56, 110):
        path = os.path.join(DIGITS, f"digits_resnet{depth}.onnx")
        calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), load_model(path), batch_size=256)
        forward = forward_seconds(path, calib)
        an = Workspace(path).analysis
        scores = class_scores(an, "l1")[0]
        for ratio in RATIOS:
            plan = PruningPlan.from_removed(an, tp_rounding(an, scores, ratio))
            cells, macs = [], None
            for recover in ("ls", "sequential"):
                start = time.perf_counter()
                result = run(PlanStrategy(plan), path, Options(calibration=calib, recover=recover))
                seconds = time.perf_counter() - start
                assert result.report["verification"]["ok"], result.report["verification"]
                macs = result.report["cost"]["macs_reduction"]
                cells.append(f"{100 * accuracy(result.model, *test):.1f} ({seconds:.1f} s, {seconds / forward:.0f}× fwd)")
            lines.append(f"| ResNet-{depth} | {ratio} | {100 * macs:.1f} | " + " | ".join(cells) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
        lines.append(f"| ResNet-{depth} | one forward pass of the 256 samples: {forward:.2f} s | | | |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
