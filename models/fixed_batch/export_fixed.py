"""Fixed-batch fixtures: zoo models exported the way most people export them.

    python models/fixed_batch/export_fixed.py

`torch.onnx.export(model, torch.randn(1, ...), path)` with no dynamic axes bakes the
batch (1) into every shape: the graph input/output dims, and often Reshape/Flatten
targets. This script re-exports, with a fixed batch, zoo models from ../zoo.py (same
builders and seeds) plus a small ViT built on nn.TransformerEncoderLayer:

  <model>.b1.onnx          TorchScript exporter (dynamo=False), opset 17, batch 1
  <model>.b1.dynamo.onnx   dynamo exporter (dynamo=True), its default opset, batch 1,
                           weights embedded, no dynamic_shapes
  resnet20.b4.onnx         TorchScript exporter, opset 17, batch fixed at 4
  cifar_calib.npy          64 seeded random float32 samples [64, 3, 32, 32]

Each file passes onnx.checker (full_check=True) and onnxruntime matches torch with
max|ort - torch| < 1e-4 (absolute) on 3 seeded inputs; MANIFEST.json lists them.
Torch is needed only to regenerate; nothing here is imported by the package.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys
import traceback
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # models/
import zoo  # noqa: E402

TS_OPSET = 17
ATOL = 1e-4
MAX_BYTES = 2 * 1024 * 1024
ZOO_MODELS = ("resnet20", "mobilenetv2", "resnet_bottleneck", "convnext")
IN_NAME, OUT_NAME = "input", "logits"  # export_yolo.py sets images / output0


# ------------------------------------------------------------------------- ViT
class ViT(nn.Module):
    """Small ViT: 4x4/s4 patch conv (32x32 -> 8x8 = 64 tokens), CLS token (Concat), learned
    positions, 4 pre-LN nn.TransformerEncoderLayer (4 heads, GELU MLP), final LayerNorm,
    Linear head on the CLS token."""

    def __init__(self, image=32, patch=4, dim=64, heads=4, mlp=128, depth=4, num_classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n + 1, dim))
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for layer in self.encoder:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name != "vit":
        return zoo.build(name)
    torch.manual_seed(zoo.SEED)
    model = ViT()
    g = torch.Generator().manual_seed(zoo.SEED + 1)
    zoo._randomise_norms(model, g)
    return model.eval(), (3, 32, 32)


# ------------------------------------------------------------------- helpers
def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _dims(vi) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
            for d in vi.type.tensor_type.shape.dim]


_PATH_IN_TRACE = re.compile(r'File "[^"]*?/(site-packages|models)/')


def scrub_paths(model: onnx.ModelProto) -> None:
    """Cut absolute paths in the dynamo exporter's stack-trace metadata (as export_zoo.py does)."""
    for node in model.graph.node:
        for p in node.metadata_props:
            if p.key.endswith("stack_trace"):
                p.value = _PATH_IN_TRACE.sub(lambda m: f'File "{m.group(1)}/', p.value)


def export(model, x, path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not dynamo:
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=TS_OPSET,
                              input_names=[IN_NAME], output_names=[OUT_NAME], do_constant_folding=True)
            return
        prog = torch.onnx.export(model, (x,), dynamo=True, external_data=False, input_names=[IN_NAME],
                                 output_names=[OUT_NAME], report=False, verify=False)
        prog.save(path, external_data=False)
    m = onnx.load(path)
    scrub_paths(m)
    onnx.save(m, path)
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")
        raise RuntimeError("dynamo exporter wrote external data despite external_data=False")


def verify(model, shape, batch, path, scale_relative=False) -> float:
    """onnx.checker (full_check), size, and ORT vs torch on 3 seeded inputs; returns max|ort - torch|.

    The bound is ATOL absolute; with scale_relative (detector outputs in pixels, where float32
    itself is ~1e-3 off at 500 px) it is ATOL * max(1, max|torch|)."""
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    size = os.path.getsize(path)
    assert size < MAX_BYTES, f"{path}: {size} bytes >= 2 MB"
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1234)
    worst = 0.0
    for _ in range(3):
        x = torch.randn((batch, *shape), generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {IN_NAME: x.numpy()})[0]
        assert got.shape == ref.shape, (path, got.shape, ref.shape)
        err = float(np.abs(got - ref).max())
        bound = ATOL * max(1.0, float(np.abs(ref).max())) if scale_relative else ATOL
        assert err < bound, f"{path}: max abs diff {err:.3e} >= {bound:.3e}"
        worst = max(worst, err)
    return worst


def describe(path, name, exporter, batch, err) -> dict:
    m = onnx.load(path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    return {
        "name": name, "file": os.path.basename(path), "exporter": exporter, "batch": batch,
        "opset": opset.get("ai.onnx"),
        "inputs": [{"name": i.name, "shape": _dims(i)} for i in m.graph.input],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in m.graph.output],
        "node_count": len(m.graph.node), "op_types": dict(sorted(ops.items())),
        "file_size": os.path.getsize(path), "sha256": sha256(path),
        "max_abs_diff_vs_torch": float(f"{err:.3e}"),
    }


def write_manifest(folder, generated_by, files, failures, calibration, extra=None) -> None:
    manifest = {
        "generated_by": generated_by,
        "seed": zoo.SEED,
        "torch": torch.__version__.split("+")[0], "onnx": onnx.__version__, "onnxruntime": ort.__version__,
        "tolerance": f"max|ort - torch| < {ATOL} (absolute), 3 seeded inputs at the fixed batch; "
                     "onnx.checker full_check; every file < 2 MB",
        **(extra or {}),
        "calibration": calibration,
        "files": sorted(files, key=lambda e: e["file"]),
        "failures": failures,
    }
    with open(os.path.join(folder, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {folder}/MANIFEST.json: {len(files)} files, {len(failures)} failures")


def main() -> int:
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    files, failures, status = [], {}, 0
    jobs = [(n, 1, False) for n in (*ZOO_MODELS, "vit")] + [(n, 1, True) for n in (*ZOO_MODELS, "vit")]
    jobs.append(("resnet20", 4, False))
    for name, batch, dynamo in jobs:
        fname = f"{name}.b{batch}{'.dynamo' if dynamo else ''}.onnx"
        path = os.path.join(HERE, fname)
        try:
            model, shape = build(name)  # fresh module per export
            torch.manual_seed(0)
            export(model, torch.randn(batch, *shape), path, dynamo)
            model, shape = build(name)
            err = verify(model, shape, batch, path)
            files.append(describe(path, name, "dynamo" if dynamo else "torchscript", batch, err))
            print(f"[ok] {fname}  {os.path.getsize(path) / 1e6:.2f} MB  max|diff| {err:.2e}")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            failures[fname] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"[FAIL] {fname}: {failures[fname]}")
            status = 1
            for p in (path, path + ".data"):
                if os.path.exists(p):
                    os.remove(p)

    calib = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    calib_path = os.path.join(HERE, "cifar_calib.npy")
    np.save(calib_path, calib)
    write_manifest(HERE, "models/fixed_batch/export_fixed.py", files, failures,
                   {"file": "cifar_calib.npy", "shape": list(calib.shape), "dtype": "float32",
                    "generator": "numpy default_rng(0).standard_normal", "sha256": sha256(calib_path)})
    return status


if __name__ == "__main__":
    sys.exit(main())
