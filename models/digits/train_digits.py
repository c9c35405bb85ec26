"""Train the bundled demo models: residual CNNs on scikit-learn's 8x8 digits.

    python models/digits/train_digits.py                             # digits_resnet.onnx (depth 20) + splits
    python models/digits/train_digits.py --depth 56 --threads 1      # digits_resnet56.onnx / .pt / _meta.json
    python models/digits/train_digits.py --depth 110 --threads 1     # digits_resnet110.onnx / .pt / _meta.json
    python models/digits/train_digits.py --out-dir /tmp/d            # write elsewhere (e.g. to compare sha256)

Data: sklearn.datasets.load_digits() (1797 samples of 8x8, values 0..16, ships with
scikit-learn), scaled to [0, 1], shape [N, 1, 8, 8] float32. Fixed seed, stratified split:
test = 360, calibration = 256 held out of the training part, train = the rest (1181).
The calibration split is what pruning (CKA, KL scoring) should use; the test split is
only for reporting accuracy.

Architecture: the CIFAR ResNet-(6n+2) of models/zoo.py with 1 input channel, stem
1->32, stages 32/32/64 of n basic blocks each (identity shortcuts everywhere except the
first block of stage 3: 1x1 conv + BN projection, stride 2, 8x8 -> 4x4), GAP, Linear(64, 10).
The depth argument (20, 56, 110, ...) gives the deeper variants. Training: Adam, one-cycle
lr 3e-3, batch 64, +-1 px shifts, 40 epochs for every depth (DEFAULT_EPOCHS).

Outputs (next to this file, or --out-dir): <name>.onnx (TorchScript exporter, opset 17,
dynamic batch, input "input" [N,1,8,8], output "logits" [N,10]); <name>_meta.json
(digits_meta.json for the default model: accuracy measured on the exported ONNX with
onnxruntime, sha256, training seconds/epochs/seed/torch version); for every model except
the default one also <name>.pt, the plain state_dict (torch.save) whose sha256 and size
are in the meta. digits_calib.npz / digits_test.npz (x float32 [N,1,8,8], y int64 [N]) are
written only for the default model; other runs check the existing files match the splits
(np.savez stamps the current time, so rewriting would change the committed bytes).

Results are bit-reproducible for a given thread count (--threads; the committed ResNet-20
used 2, the ResNet-56/110 used 1: float reductions differ between thread counts).

Importable, without training or side effects (the data/model code lives in digits_data.py):

    from models.digits.train_digits import load_splits, build_digits_resnet   # repo root on sys.path
    from models.digits.digits_data import load_splits, build_digits_resnet, load_trained
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import torch
import torch.nn.functional as F

try:  # imported as models.digits.train_digits (repo root on sys.path)
    from models.digits.digits_data import (HERE, N_CALIB, N_TEST, SEED, STRIDES, WIDTHS,  # noqa: F401
                                           build_digits_resnet, load_splits, load_trained, model_name)
except ImportError:  # run as a script: this directory is sys.path[0]
    from digits_data import (HERE, N_CALIB, N_TEST, SEED, STRIDES, WIDTHS,  # noqa: F401
                             build_digits_resnet, load_splits, load_trained, model_name)

OPSET = 17
# Default epochs per depth (lr schedule is the same one-cycle for all); --epochs overrides.
DEFAULT_EPOCHS = {20: 40, 56: 40, 110: 40}


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random +-1 pixel translation (zero padding): light augmentation for 1.2k training images."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dx = torch.randint(0, 3, (n,), generator=g)
    dy = torch.randint(0, 3, (n,), generator=g)
    rows = (torch.arange(8)[None, :] + dy[:, None])  # [n, 8]
    cols = (torch.arange(8)[None, :] + dx[:, None])
    idx_n = torch.arange(n)[:, None, None]
    return padded[idx_n, 0, rows[:, :, None], cols[:, None, :]][:, None]


def train(model, splits, epochs: int, seed: int = SEED, lr: float = 3e-3, batch: int = 64, log=print):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in splits["train"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            xb = _shift(x[idx], g)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if ep % 5 == 4 or ep == epochs - 1:
            log(f"epoch {ep + 1:3d}  loss {total / len(x):.4f}  calib acc {accuracy_torch(model, *splits['calib']):.4f}")
    return model.eval()


@torch.no_grad()
def accuracy_torch(model, x, y) -> float:
    model.eval()
    return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def accuracy_onnx(path: str, x, y) -> float:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": x})[0]
    return float((logits.argmax(1) == y).mean())


def export(model, path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), path, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(path), full_check=True)


def count_macs(model, shape=(1, 1, 8, 8)) -> int:
    """Conv H_out*W_out*C_in*C_out*k*k/g + Linear in*out (the DESIGN.md convention)."""
    total = [0]

    def hook(m, _i, o):
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            total[0] += o.shape[2] * o.shape[3] * m.in_channels * m.out_channels * kh * kw // m.groups
        else:
            total[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hs:
        h.remove()
    return total[0]


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=20, help="6n+2: 20 (default), 56, 110, ...")
    ap.add_argument("--epochs", type=int, default=None,
                    help=f"default per depth {DEFAULT_EPOCHS}, 40 for other depths")
    ap.add_argument("--name", default=None, help="output stem; default digits_resnet (depth 20) or digits_resnet<depth>")
    ap.add_argument("--out-dir", default=HERE, help="where to write (default: next to this script)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it; see docstring)")
    ap.add_argument("--min-acc", type=float, default=0.95)
    ap.add_argument("--save-pt", action=argparse.BooleanOptionalAction, default=None,
                    help="also torch.save the state_dict as <name>.pt (default: yes except for digits_resnet)")
    ap.add_argument("--write-splits", action=argparse.BooleanOptionalAction, default=None,
                    help="(re)write digits_calib.npz / digits_test.npz (default: only for digits_resnet; "
                         "otherwise the existing files are checked against the splits)")
    args = ap.parse_args(argv)
    name = args.name or model_name(args.depth)
    default_model = name == "digits_resnet"
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS.get(args.depth, 40)
    save_pt = (not default_model) if args.save_pt is None else args.save_pt
    write_splits = default_model if args.write_splits is None else args.write_splits
    out = args.out_dir
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    splits = load_splits(SEED)
    for split in ("calib", "test"):
        xs, ys = splits[split]
        split_path = os.path.join(out, f"digits_{split}.npz")
        if write_splits or not os.path.exists(split_path):
            np.savez(split_path, x=xs, y=ys)
        else:  # np.savez stamps the zip with the current time: do not rewrite identical data
            with np.load(split_path) as d:
                if not (np.array_equal(d["x"], xs) and np.array_equal(d["y"], ys)):
                    print(f"{split_path} does not match the splits; rerun with --write-splits", file=sys.stderr)
                    return 1

    model = build_digits_resnet(args.depth)
    t0 = time.time()
    train(model, splits, epochs)
    train_s = time.time() - t0

    path = os.path.join(out, f"{name}.onnx")
    export(model, path)
    pt_file = None
    if save_pt:
        pt_file = os.path.join(out, f"{name}.pt")
        torch.save(model.state_dict(), pt_file)
        reloaded = load_trained(args.depth, pt_file)
        with torch.no_grad():
            xt = torch.from_numpy(splits["test"][0])
            assert torch.equal(reloaded(xt), model(xt)), "state_dict round trip changed the outputs"
    acc = {k: accuracy_onnx(path, *splits[k]) for k in ("train", "calib", "test")}
    torch_test = accuracy_torch(model, *splits["test"])
    n_blocks = (args.depth - 2) // 6
    meta = {
        "file": os.path.basename(path),
        "sha256": _sha256(path),
        "test_accuracy": acc["test"],
        "calib_accuracy": acc["calib"],
        "train_accuracy": acc["train"],
        "test_accuracy_torch": torch_test,
        "accuracy_measured_with": f"onnxruntime {ort.__version__} CPU on digits_test.npz",
        "splits": {k: int(len(v[1])) for k, v in splits.items()},
        "split_files": {"calib": "digits_calib.npz", "test": "digits_test.npz"},
        "seed": SEED,
        "data": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}), x/16 -> [0,1], shape [N,1,8,8]",
        "architecture": {
            "family": f"CIFAR-style ResNet-{args.depth} (basic blocks) adapted to 1x8x8",
            "depth": args.depth,
            "stem": "conv3x3 1->32 + BN + ReLU",
            "stages": [{"width": w, "blocks": n_blocks, "stride": s} for w, s in zip(WIDTHS, STRIDES)],
            "identity_blocks": 3 * n_blocks - 1,
            "projection_blocks": ["layer3.0 (1x1 conv + BN, stride 2, 32->64)"],
            "head": "GlobalAveragePool -> Flatten -> Gemm(64, 10)",
            "params": int(sum(p.numel() for p in model.parameters())),
            "macs": count_macs(model),
            "note": "BatchNorm is folded into the convs by the TorchScript exporter (eval mode)",
        },
        "export": {"exporter": "torchscript (dynamo=False)", "opset": OPSET, "input": "input [batch,1,8,8]",
                   "output": "logits [batch,10]"},
        "training": {"optimizer": "Adam(lr=3e-3 one-cycle, weight_decay=1e-4)", "epochs": epochs,
                     "batch": 64, "augmentation": "random +-1 px shift", "threads": args.threads,
                     "seconds": round(train_s, 1), "torch": torch.__version__.split("+")[0]},
    }
    if pt_file:  # new keys only when a .pt is written: digits_meta.json keeps its original layout
        meta["file_size"] = os.path.getsize(path)
        meta["pytorch"] = {
            "file": os.path.basename(pt_file),
            "sha256": _sha256(pt_file),
            "file_size": os.path.getsize(pt_file),
            "format": "torch.save(model.state_dict()); load with models/digits/digits_data.py load_trained(depth) "
                      "or build_digits_resnet(depth).load_state_dict(torch.load(path, weights_only=True))",
            "state_dict_tensors": len(model.state_dict()),
            "torch": torch.__version__.split("+")[0],
        }
        meta["regenerate"] = (f"python models/digits/train_digits.py --depth {args.depth} --threads {args.threads}"
                              + (f" --epochs {epochs}" if args.epochs is not None else ""))
    meta_name = "digits_meta.json" if default_model else f"{name}_meta.json"
    with open(os.path.join(out, meta_name), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps({k: meta[k] for k in ("file", "test_accuracy", "calib_accuracy", "splits")}))
    print(f"trained in {train_s:.1f}s; {os.path.getsize(path) / 1e6:.2f} MB"
          + (f" (+ {os.path.getsize(pt_file) / 1e6:.2f} MB .pt)" if pt_file else ""))
    if acc["test"] < args.min_acc:
        print(f"test accuracy {acc['test']:.4f} < {args.min_acc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
