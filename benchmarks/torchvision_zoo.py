"""Prune every torchvision classification model at ratio 0.5 and tabulate what happens.

Models this project did not write: each is exported from torchvision (random weights,
no download) with the TorchScript exporter, pruned by onnxprune at ratio 0.5, and the
result is one of
  ok       — a valid model (checker + ONNX Runtime, same interface) with the MAC
             reduction printed (the target is >= 30 %);
  refused  — onnxprune declined with a one-line reason;
  broken   — anything else (an internal error): a bug.

Needs torch + torchvision (not part of CI):  pip install torch==2.14.1 torchvision==0.29.1
    python benchmarks/torchvision_zoo.py [--models resnet18 ...] [--max-params 150e6]
        [--json benchmarks/results/torchvision.json] [--timeout 600]
Each model runs in its own subprocess (memory and time isolated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def one(name: str, workdir: str) -> dict:
    import torch
    import torchvision

    from onnxprune.compiler.pipeline import prune
    from onnxprune.errors import OnnxPruneError

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    params = sum(p.numel() for p in model.parameters())
    size = 299 if name.startswith("inception") else 224
    path = os.path.join(workdir, f"{name}.onnx")
    t0 = time.perf_counter()
    torch.onnx.export(
        model, (torch.randn(1, 3, size, size),), path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        result = prune(path, ratio=0.5)
    except OnnxPruneError as e:
        return {"model": name, "status": "refused", "reason": str(e), "params": params, "export_s": export_s}
    c = result.report["cost"]
    return {
        "model": name,
        "status": "ok",
        "params": params,
        "macs_before": c["before"]["macs"],
        "macs_after": c["after"]["macs"],
        "macs_reduction": c["macs_reduction"],
        "params_reduction": c["params_reduction"],
        "prediction_exact": c["predicted"] == c["after"],
        "groups": result.report["groups"]["total"],
        "prunable_groups": result.report["groups"]["prunable"],
        "export_s": round(export_s, 1),
        "prune_s": round(time.perf_counter() - t0, 1),
    }


def _count_params(name: str) -> int:
    import torch
    import torchvision

    try:  # without allocating: some builders compute widths with tensors, which meta refuses
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None)
    except NotImplementedError:
        model = torchvision.models.get_model(name, weights=None)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--max-params", type=float, default=150e6)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "torchvision.json"))
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(one(args.one, d)))
        return 0

    import torchvision

    names = args.models or torchvision.models.list_models(module=torchvision.models)
    rows = []
    if args.resume and os.path.exists(args.json):
        with open(args.json) as f:
            rows = json.load(f)
    done = {r["model"] for r in rows}
    for name in names:
        if name in done:
            continue
        n_params = _count_params(name)
        if n_params > args.max_params:
            row = {"model": name, "status": "skipped", "reason": f"{n_params / 1e6:.0f} M params > --max-params", "params": n_params}
        else:
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", name], capture_output=True, text=True, timeout=args.timeout
                )
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode == 0 and lines:
                    row = json.loads(lines[-1])
                else:
                    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    row = {"model": name, "status": "broken", "reason": err[:400], "params": n_params}
            except subprocess.TimeoutExpired:
                row = {"model": name, "status": "broken", "reason": f"timeout after {args.timeout} s", "params": n_params}
        rows.append(row)
        red = f"{100 * row['macs_reduction']:.1f} %" if "macs_reduction" in row else ""
        print(f"{name:28s} {row['status']:8s} {red:>8s} {row.get('reason', '')[:120]}", flush=True)
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    ok = [r for r in rows if r["status"] == "ok"]
    good = [r for r in ok if r["macs_reduction"] >= 0.30]
    print(
        f"\n{len(rows)} models: {len(ok)} pruned validly ({len(good)} by >= 30 % MACs), "
        f"{sum(r['status'] == 'refused' for r in rows)} refused, {sum(r['status'] == 'broken' for r in rows)} broken, "
        f"{sum(r['status'] == 'skipped' for r in rows)} skipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
