"""Everything-at-once on the digits ResNet-56 to −40 % MACs with its 256 calibration
samples: this checkout against commit a0f90b4 (the speed issue's baseline), on the same
machine, in one run, one after the other, each through its own CLI:

    python benchmarks/search_speed.py [--baseline a0f90b4] [--target 0.4] [--repeat 1]

The baseline is checked out with `git worktree` into a temporary directory (this needs
the git repository). Both run `prune --method everything --calib digits_calib.npz
--target-flops T`; this checkout with `--recover none` too, the arbiter the baseline had
(plain cuts compared by CKA), so the choices must be the same: the script prints both
sequences and whether they match. A third row runs this checkout's default (candidates
recovered before CKA compares them), which chooses differently and does more per step.
Wall seconds of the whole command (loading, search, rewrite, verification, latency).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "models", "digits")


def prune(code: str, target: float, extra: list[str], work: str) -> tuple[float, dict]:
    """Seconds and report of one CLI run of the onnxprune package under `code`."""
    report = os.path.join(work, "report.json")
    args = ["prune", os.path.join(DIGITS, "digits_resnet56.onnx"), "-o", os.path.join(work, "out.onnx"),
            "--method", "everything", "--calib", os.path.join(DIGITS, "digits_calib.npz"),
            "--target-flops", str(target), "--report", report, *extra]
    script = f"import sys; sys.path.insert(0, {code!r}); from onnxprune.cli import main; sys.exit(main({args!r}))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=work, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{code}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    with open(report) as f:
        return seconds, json.load(f)


def choices(report: dict) -> list[str]:
    steps = report.get("iterations") or []
    out = []
    for s in steps:
        if s["choice"] == "layer":
            out.append(f"block {s['layer_candidate']['block']}")
        else:
            out.append(f"{s['neuron_candidate']['channels']} ch")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="a0f90b4")
    ap.add_argument("--target", type=float, default=0.4)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnxprune-speed-") as tmp:
        old = os.path.join(tmp, "baseline")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old, args.baseline],
                       check=True, capture_output=True)
        try:
            rows = []
            for label, code, extra in ((f"commit {args.baseline}", old, []),
                                       ("this checkout, --recover none (same arbiter)", ROOT, ["--recover", "none"]),
                                       ("this checkout, default (recovered arbiter)", ROOT, [])):
                seconds, report = prune(code, args.target, extra, tmp)
                rows.append((label, seconds, report))
                print(f"{label}: {seconds:.1f} s", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], check=False, capture_output=True)
    base_s, base_choices = rows[0][1], choices(rows[0][2])
    print(f"digits ResNet-56, everything-at-once to −{100 * args.target:.0f} % MACs, 256 calibration samples\n")
    print("| run | seconds | × baseline speed | MACs −% | steps | same choices as the baseline |")
    print("|---|---:|---:|---:|---:|---|")
    for label, seconds, report in rows:
        macs = report["cost"]["macs_reduction"] if "cost" in report else None
        same = "yes" if choices(report) == base_choices else "no"
        print(f"| {label} | {seconds:.1f} | {base_s / seconds:.2f} | {100 * macs:.1f} | {len(choices(report))} | {same} |")
    for label, _, report in rows:
        print(f"\n{label}: {', '.join(choices(report))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
