"""The comparison benchmark of the everything-at-once method on the digits ResNets:
accuracy against MAC reduction for everything-at-once (CKA arbiter), layers only,
channels only (L1, uniform) and a random choice between the two candidates, all through
the same loop, without fine-tuning (the reference fine-tuning hook is
`benchmarks/finetune_digits.py`, run with --fine-tune). Accuracy is measured on the
held-out test split through the probe (exact), CKA on the calibration split.

Also prints the overhead: whole-run time against the forward passes it had to make
(probe evaluations × one forward pass of the calibration set, timed in the same run).

    python benchmarks/everything_digits.py [--depth 56] [--target 0.8] [--seeds 3] [--samples 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from onnxprune.compiler.everything import prune_everything
from onnxprune.compiler.target import Target
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.session import measure_latency

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "models", "digits")
LEVELS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8)


def run_method(path, calib, test, target, arbiter, seed, fine_tune=None):
    curve = []

    def on_step(parent, step):
        out = parent.probe.run({parent.probe.inputs[0]: test["x"]}, [parent.candidate()])[0]
        logits = out[parent.probe.output_names[-1]] if "logits" not in out else out["logits"]
        curve.append((step["macs_reduction"], float((logits.argmax(1) == test["y"]).mean()), step["choice"]))

    start = time.perf_counter()
    result = prune_everything(path, calib, target=Target(flops=target), arbiter=arbiter, seed=seed,
                              progress=False, measure=False, verify=True, on_step=on_step, fine_tune=fine_tune)
    took = time.perf_counter() - start
    evaluations = sum(s["probe_evaluations"] for s in result.report["iterations"])
    return result, curve, took, evaluations


def at_level(curve, level):
    for red, acc, _ in curve:
        if red >= level - 1e-9:
            return red, acc
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=56)
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--json", default=None, help="also save the curves here")
    ap.add_argument("--fine-tune", action="store_true",
                    help="fine-tune after every iteration with benchmarks/finetune_digits.py (epochs: ONNXPRUNE_FT_EPOCHS)")
    ap.add_argument("--methods", default="cka,layers,neurons,random", help="comma-separated arbiters to run")
    args = ap.parse_args()
    hook = None
    if args.fine_tune:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from finetune_digits import fine_tune as hook
    path = os.path.join(DIGITS, f"digits_resnet{args.depth}.onnx")
    model = load_model(path)
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), model, samples=args.samples, batch_size=args.samples)
    test = dict(np.load(os.path.join(DIGITS, "digits_test.npz")))
    probe = ProbeModel(model)
    full = probe.run({"input": test["x"]}, [Candidate()])
    start = time.perf_counter()
    for _ in range(3):
        probe.features(calib.batches(), [Candidate()])
    forward = (time.perf_counter() - start) / 3
    base = float((ProbeModel(model, keep_outputs=True).run({"input": test["x"]}, [Candidate()])[0]["logits"].argmax(1) == test["y"]).mean())
    del full
    wanted = set(args.methods.split(","))
    methods = [("everything (CKA)", "cka", 0), ("layers only", "layers", 0), ("channels only (L1)", "neurons", 0)]
    methods += [(f"random choice (seed {s})", "random", s) for s in range(args.seeds)]
    methods = [m for m in methods if m[1] in wanted]
    rows, saved = [], {}
    for label, arbiter, seed in methods:
        result, curve, took, evals = run_method(path, calib, test, args.target, arbiter, seed, fine_tune=hook)
        ok = result.report["verification"]["ok"]
        one = {"input": test["x"][:1]}
        speed = (measure_latency(model, one, runs=200) / measure_latency(result.model, one, runs=200),
                 1 / max(1 - result.report["cost"]["macs_reduction"], 1e-9))
        rows.append((label, curve, took, evals, ok, result.report["chosen"], speed))
        saved[label] = {"curve": curve, "seconds": took, "evaluations": evals, "chosen": result.report["chosen"],
                        "final_latency_speedup": speed[0], "final_mac_speedup": speed[1]}
        print(f"{label}: {len(curve)} iterations, {took:.1f} s, chosen {result.report['chosen']}, verified {ok}", file=sys.stderr)
    tuning = "fine-tuned after every iteration (benchmarks/finetune_digits.py)" if hook else "no fine-tuning"
    print(f"digits ResNet-{args.depth}: test accuracy {100 * base:.2f} % before pruning; {args.samples} calibration "
          f"samples; {tuning}; accuracy (%) at the first iteration reaching each MAC reduction\n")
    print("| method | " + " | ".join(f"−{int(100 * lv)} % MACs" for lv in LEVELS)
          + " | final MAC speed-up | final ORT latency speed-up | run s | overhead ×fwd |")
    print("|---|" + "---:|" * len(LEVELS) + "---:|---:|---:|---:|")
    for label, curve, took, evals, ok, chosen, speed in rows:
        cells = []
        for lv in LEVELS:
            hit = at_level(curve, lv)
            cells.append("—" if hit is None else f"{100 * hit[1]:.2f}")
        overhead = took / max(evals * forward, 1e-12)
        print(f"| {label} | " + " | ".join(cells) + f" | {speed[1]:.2f}x | {speed[0]:.2f}x | {took:.0f} | {overhead:.2f} |")
    print(f"\none forward pass of the calibration set through the probe: {forward:.3f} s")
    ev = rows[0][1]
    for name in ("layers only", "channels only (L1)"):
        other = next(r[1] for r in rows if r[0] == name)
        wins = []
        for lv in LEVELS:
            a, b = at_level(ev, lv), at_level(other, lv)
            if a and b:
                wins.append(a[1] >= b[1])
        print(f"everything >= {name} at every shared level: {'yes' if wins and all(wins) else 'NO'} ({sum(wins)}/{len(wins)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"depth": args.depth, "base_accuracy": base, "forward_s": forward, "methods": saved}, f, indent=1)


if __name__ == "__main__":
    main()
