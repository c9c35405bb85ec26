"""Prune every model of the reference zoo at one ratio and print a Markdown table:
MACs and parameters before/after (measured on the emitted model), whether the cost
model's prediction was exact, and the time taken.

    python benchmarks/zoo_prune.py [--ratio 0.5] [--criterion l1] [--global]
"""

from __future__ import annotations

import argparse
import glob
import os
import time

from onnxprune.compiler.pipeline import prune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--criterion", default="l1")
    ap.add_argument("--global", dest="global_ranking", action="store_true")
    args = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "zoo", "*.onnx")))
    paths.append(os.path.join(ROOT, "models", "digits", "digits_resnet.onnx"))
    print(f"ratio {args.ratio}, criterion {args.criterion}{', global' if args.global_ranking else ''}\n")
    print("| model | groups (prunable) | MACs before | MACs after | MACs −% | params −% | predicted = measured | s |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for path in paths:
        t = time.perf_counter()
        r = prune(path, ratio=args.ratio, criterion=args.criterion, global_ranking=args.global_ranking)
        c, g = r.report["cost"], r.report["groups"]
        print(
            f"| {os.path.basename(path)} | {g['total']} ({g['prunable']}) | {c['before']['macs'] / 1e6:.2f} M "
            f"| {c['after']['macs'] / 1e6:.2f} M | {100 * c['macs_reduction']:.1f} | {100 * c['params_reduction']:.1f} "
            f"| {'yes' if c['predicted'] == c['after'] else 'NO'} | {time.perf_counter() - t:.2f} |"
        )


if __name__ == "__main__":
    main()
