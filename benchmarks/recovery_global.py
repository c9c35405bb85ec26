"""Uniform against global (non-uniform) channel ranking on the trained digits ResNet-56,
without and with least-squares recovery, no fine-tuning, in one run:

    python benchmarks/recovery_global.py                     # l1 and fluctuation
    python benchmarks/recovery_global.py --criteria l1,wanda

Uniform: `--ratio r` removes floor(r · size) of every group. Global (`--global`): one
ranking of all channels, each score divided by its group's mean, removes r · the total,
so groups lose different fractions (the per-layer ratios the scores choose). The MACs
removed differ between the two at the same r: compare rows at similar MACs. 256
calibration samples of digits_calib.npz (the data criteria and recovery), accuracy on
the 360 held-out test samples.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from recovery_digits import DIGITS

from onnxprune.compiler.channels import ChannelsStrategy
from onnxprune.compiler.driver import run
from onnxprune.compiler.workspace import Options
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled

RATIOS = (0.1, 0.2, 0.3, 0.4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criteria", default="l1,fluctuation", help="comma-separated (default l1,fluctuation)")
    args = ap.parse_args(argv)
    path = os.path.join(DIGITS, "digits_resnet56.onnx")
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), load_model(path), batch_size=256)
    test = load_labelled(os.path.join(DIGITS, "digits_test.npz"))
    lines = ["| criterion | ranking | ratio | MACs −% | no recovery | least squares |", "|---|---|---:|---:|---:|---:|"]
    for criterion in args.criteria.split(","):
        for ranking in ("uniform", "global"):
            for ratio in RATIOS:
                cells, macs = [], 0.0
                for recover in ("none", "ls"):
                    strategy = ChannelsStrategy(ratio, criterion, ranking == "global")
                    result = run(strategy, path, Options(calibration=calib, recover=recover), verify=False)
                    macs = result.report["cost"]["macs_reduction"]
                    cells.append(f"{100 * accuracy(result.model, *test):.1f}")
                lines.append(f"| {criterion} | {ranking} | {ratio} | {100 * macs:.1f} | " + " | ".join(cells) + " |")
                print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
