"""Accuracy against MACs without fine-tuning on the trained digits ResNet-56 / ResNet-110:
every criterion with and without recovery, layers and everything-at-once with and without
recovery, and Torch-Pruning 1.6.1's criteria on the same trained networks, in one run.

    python benchmarks/recovery_digits.py                 # both depths, everything
    python benchmarks/recovery_digits.py --depth 56 --quick
    python benchmarks/recovery_digits.py --no-torch      # skip Torch-Pruning
    python benchmarks/recovery_digits.py --depth 56 --criteria kl --no-torch --no-search   # one row

Ours: every group loses the same fraction r of its channels (uniform), rounded as
Torch-Pruning rounds (it keeps int(size · (1 − r)): 4 of 32 go at r = 0.1, where
`--ratio 0.1` removes 3), so both tools remove the same channel counts and the MACs match;
the 256 calibration samples of digits_calib.npz for recovery and the data criteria;
accuracy on the 360 held-out test samples. `random` ranks channels at random (mean of
3 seeds).
Layers / everything: `--target-flops t`, CKA on the same calibration samples.

Torch-Pruning (a benchmark-only dependency: `pip install torch torch-pruning==1.6.1`;
needs the digits .pt state dicts): `MetaPruner` with `pruning_ratio=r`, uniform, the
classifier ignored, BatchNorm kept (it prunes the PyTorch module, not an export).
Random, Magnitude p=1 / p=2 (ours: l1 / l2), BNScale (ours: bn), and the data-driven
Taylor and Hessian on the calibration samples with their labels. Its MACs are its own
count (`tp.utils.count_ops_and_params`); both count convolutions and the classifier.

Output: a markdown table per depth on stdout, and --json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from onnxprune.compiler.channels import PlanStrategy
from onnxprune.compiler.data_importance import DATA_CRITERIA, data_scores
from onnxprune.compiler.driver import run
from onnxprune.compiler.everything import prune_everything
from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.layers import prune_layers
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.target import Target
from onnxprune.compiler.workspace import Options, Workspace
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.evaluate import accuracy, load_labelled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "models", "digits")
RATIOS = (0.1, 0.2, 0.3, 0.4)
CRITERIA = ("random", "l1", "l2", "bn", "wanda", "fluctuation", "obs", "kl")
TARGETS = (0.3, 0.5)


def ours(path: str, calib, test, ratios, criteria, seeds: int) -> list[dict]:
    """Every criterion at every ratio, with Torch-Pruning's rounding (so that both tools
    remove the same number of channels from every group and the MACs match)."""
    rows = []
    ws = Workspace(path, Options(calibration=calib))
    an = ws.analysis
    for criterion in criteria:
        runs = range(seeds) if criterion == "random" else [None]
        scored = [_scores(ws, criterion, seed) for seed in runs]
        for ratio in ratios:
            # data-free recovery (synthesized inputs) for the criteria that need no data
            for recover in ("none", "ls") if criterion in DATA_CRITERIA else ("none", "ls", "synthetic"):
                start = time.perf_counter()
                accs, macs = [], None
                for scores in scored:
                    plan = PruningPlan.from_removed(an, tp_rounding(an, scores, ratio))
                    result = run(PlanStrategy(plan), path, Options(calibration=calib, recover=recover), verify=False)
                    accs.append(accuracy(result.model, *test))
                    macs = result.report["cost"]["macs_reduction"]
                rows.append({"tool": "onnxprune", "method": f"channels {criterion}", "ratio": ratio, "recover": recover,
                             "macs_reduction": macs, "accuracy": float(np.mean(accs)),
                             "seconds": round(time.perf_counter() - start, 2)})
                print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def _scores(ws: Workspace, criterion: str, seed: int | None) -> dict[int, float]:
    if criterion == "random":
        base, _ = class_scores(ws.analysis, "l1")
        return dict(zip(base, np.random.default_rng(seed).random(len(base)).tolist()))
    if criterion in DATA_CRITERIA:
        return data_scores(ws, criterion)[0]
    return class_scores(ws.analysis, criterion)[0]


def tp_rounding(an, scores: dict[int, float], ratio: float) -> set[int]:
    """The lowest-scored channels of every prunable group, as many as Torch-Pruning
    removes at `ratio` (it keeps int(size · (1 − ratio)); `--ratio` removes int(size · ratio))."""
    removed: set[int] = set()
    for g in an.groups:
        if not g.prunable:
            continue
        n = min(g.size - int(g.size * (1 - ratio)), len(g.prunable), g.size - 1)
        removed.update(sorted(g.prunable, key=lambda c: (scores[c], c))[:n])
    return removed


def forward_seconds(model, calib) -> float:
    """Seconds of one ONNX Runtime pass (one thread, basic optimisations) over `calib`."""
    from onnxprune.runtime.session import ort_session

    session = ort_session(model if not isinstance(model, str) else load_model(model))
    start = time.perf_counter()
    for batch in calib.batches():
        session.run(None, batch)
    return time.perf_counter() - start


def recovery_cost(path: str, calib, ratio: float = 0.3) -> dict:
    """Seconds of least-squares recovery (statistics run + solves + weight update) for
    l1 channels at `ratio`, against one ONNX Runtime forward pass of the calibration set
    (both one thread; the rewrite itself is not counted)."""
    from onnxprune.compiler.recover import plan_recovery

    ws = Workspace(path, Options(calibration=calib, recover="ls"))
    removed = tp_rounding(ws.analysis, class_scores(ws.analysis, "l1")[0], ratio)
    forward = forward_seconds(ws.original, calib)
    start = time.perf_counter()
    recovery, _ = plan_recovery(ws, removed, [], False)
    gathered = time.perf_counter() - start
    ws.rewrite(removed, [], slice_channels=True)
    start = time.perf_counter()
    recovery.apply(ws.model)
    solved = time.perf_counter() - start
    row = {"forward_s": round(forward, 3), "statistics_s": round(gathered, 3), "solve_s": round(solved, 3),
           "ratio_to_forward": round((gathered + solved) / forward, 2), "layers": len(recovery.records)}
    print(f"  recovery cost {row}", file=sys.stderr)
    return row


def searched(path: str, calib, test, targets) -> list[dict]:
    rows = []
    for method in ("layers", "everything"):
        for target in targets:
            for recover in ("none", "ls"):
                start = time.perf_counter()
                kwargs = {"target": Target(flops=target), "verify": False, "recover": recover}
                if method == "layers":
                    result = prune_layers(path, calib, **kwargs)
                else:
                    result = prune_everything(path, calib, progress=False, measure=False, **kwargs)
                chosen = result.report.get("chosen") or {}
                rows.append({"tool": "onnxprune", "method": method, "target": target, "recover": recover,
                             "macs_reduction": result.report["cost"]["macs_reduction"],
                             "accuracy": accuracy(result.model, *test), "chosen": chosen,
                             "seconds": round(time.perf_counter() - start, 2)})
                print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def torch_pruning(depth: int, calib, test, ratios, seeds: int) -> list[dict]:
    import torch
    import torch_pruning as tp

    sys.path.insert(0, ROOT)  # models/digits: the PyTorch definition of the trained networks
    from models.digits.digits_data import load_trained

    x, y = torch.from_numpy(test[0]), test[1]
    cx = torch.from_numpy(calib.arrays[next(iter(calib.arrays))])
    cy = torch.from_numpy(np.asarray(load_labelled(os.path.join(DIGITS, "digits_calib.npz"))[1]))
    example = torch.randn(1, 1, 8, 8)
    makers = {
        "random": lambda: tp.importance.RandomImportance(),
        "magnitude p=1 (l1)": lambda: tp.importance.MagnitudeImportance(p=1),
        "magnitude p=2 (l2)": lambda: tp.importance.MagnitudeImportance(p=2),
        "BN scale (bn)": lambda: tp.importance.BNScaleImportance(),
        "Taylor (data)": lambda: tp.importance.TaylorImportance(),
        "Hessian (data)": lambda: tp.importance.GroupHessianImportance(),
    }
    rows = []
    for name, make in makers.items():
        for ratio in ratios:
            accs, macs = [], None
            for seed in range(seeds if name == "random" else 1):
                torch.manual_seed(seed)
                model = load_trained(depth)
                base, _ = tp.utils.count_ops_and_params(model, example)
                imp = make()
                head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
                pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=ratio, ignored_layers=head)
                if name.startswith("Taylor"):
                    model.zero_grad()
                    torch.nn.functional.cross_entropy(model(cx), cy).backward()
                elif name.startswith("Hessian"):
                    imp.zero_grad()
                    for i in range(len(cx)):
                        model.zero_grad()
                        torch.nn.functional.cross_entropy(model(cx[i:i + 1]), cy[i:i + 1]).backward()
                        imp.accumulate_grad(model)
                pruner.step()
                after, _ = tp.utils.count_ops_and_params(model, example)
                macs = 1 - after / base
                with torch.no_grad():
                    accs.append(float((model.eval()(x).argmax(1).numpy() == y).mean()))
            rows.append({"tool": "Torch-Pruning 1.6.1", "method": name, "ratio": ratio, "recover": "none",
                         "macs_reduction": round(macs, 6), "accuracy": float(np.mean(accs))})
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def table(depth: int, base: float, rows: list[dict], ratios, cost: dict | None = None) -> str:
    out = [f"### digits ResNet-{depth} (test accuracy {100 * base:.2f} % before; no fine-tuning)", "",
           ("Channels, uniform `--ratio`: accuracy % (MACs removed %): without recovery / **least-squares recovery "
            "on the calibration data** / data-free recovery (synthesized inputs; not for the data criteria)."), "",
           "| tool | criterion | " + " | ".join(f"ratio {r}" for r in ratios) + " |",
           "|---|---|" + "---|" * len(ratios)]
    chans = [r for r in rows if "ratio" in r]
    keys = []
    for r in chans:
        if (r["tool"], r["method"]) not in keys:
            keys.append((r["tool"], r["method"]))
    for tool, method in keys:
        cells = []
        for ratio in ratios:
            got = {r["recover"]: r for r in chans if (r["tool"], r["method"], r["ratio"]) == (tool, method, ratio)}
            if not got:
                cells.append("—")
                continue
            none, ls, free = got.get("none"), got.get("ls"), got.get("synthetic")
            text = f"{100 * none['accuracy']:.1f}" if none else "—"
            if ls:
                text += f" / **{100 * ls['accuracy']:.1f}**"
            if free:
                text += f" / {100 * free['accuracy']:.1f}"
            macs = (none or ls)["macs_reduction"]
            cells.append(f"{text} (−{100 * macs:.1f})")
        out.append(f"| {tool} | {method.replace('channels ', '')} | " + " | ".join(cells) + " |")
    search = [r for r in rows if "target" in r]
    if search:
        out += ["", "Searched to `--target-flops`: accuracy % (MACs removed %; blocks dropped + channel steps).", "",
                "| method | target | no recovery | recovery |", "|---|---|---|---|"]
        for method in ("layers", "everything"):
            for target in sorted({r["target"] for r in search}):
                cells = []
                for recover in ("none", "ls"):
                    r = next((r for r in search if (r["method"], r["target"], r["recover"]) == (method, target, recover)), None)
                    if r is None:
                        cells.append("—")
                        continue
                    ch = r["chosen"] or {}
                    what = f"; {ch.get('layers', 0)} + {ch.get('neurons', 0)}" if method == "everything" else ""
                    cells.append(f"{100 * r['accuracy']:.1f} (−{100 * r['macs_reduction']:.1f}{what})")
                out.append(f"| {method} | {target} | " + " | ".join(cells) + " |")
    if cost:
        out += ["", (f"Recovery cost (l1, ratio 0.3, {cost['layers']} layers refit): statistics {cost['statistics_s']} s "
                     f"+ solves {cost['solve_s']} s = {cost['ratio_to_forward']}× one forward pass of the calibration set "
                     f"({cost['forward_s']} s).")]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, action="append", help="56 and/or 110 (default both)")
    ap.add_argument("--quick", action="store_true", help="ratios 0.1 and 0.3, l1 and wanda, target 0.5, 1 random seed")
    ap.add_argument("--no-torch", action="store_true", help="skip Torch-Pruning")
    ap.add_argument("--no-search", action="store_true", help="skip layers / everything")
    ap.add_argument("--criteria", help=f"comma-separated subset of {','.join(CRITERIA)} (default all)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()
    ratios = (0.1, 0.3) if args.quick else RATIOS
    criteria = ("random", "l1", "wanda") if args.quick else CRITERIA
    if args.criteria:
        criteria = tuple(c for c in args.criteria.split(",") if c)
        unknown = [c for c in criteria if c not in CRITERIA]
        if unknown:
            ap.error(f"unknown criterion {unknown[0]!r}; choose from {', '.join(CRITERIA)}")
    targets = (0.5,) if args.quick else TARGETS
    seeds = 1 if args.quick else 3
    results = {}
    for depth in args.depth or (56, 110):
        path = os.path.join(DIGITS, f"digits_resnet{depth}.onnx")
        calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), load_model(path), batch_size=256)
        test = load_labelled(os.path.join(DIGITS, "digits_test.npz"))
        base = accuracy(load_model(path), *test)
        print(f"ResNet-{depth}", file=sys.stderr)
        cost = recovery_cost(path, calib)
        rows = ours(path, calib, test, ratios, criteria, seeds)
        if not args.no_search:
            rows += searched(path, calib, test, targets)
        if not args.no_torch:
            try:
                rows += torch_pruning(depth, calib, test, ratios, seeds)
            except ImportError as err:
                print(f"Torch-Pruning skipped: {err} (pip install torch torch-pruning==1.6.1)", file=sys.stderr)
        results[depth] = {"base": base, "rows": rows, "recovery_cost": cost}
        print(table(depth, base, rows, ratios, cost) + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
