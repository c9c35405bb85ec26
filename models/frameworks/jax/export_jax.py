"""Export two small Flax (NNX) models to ONNX with jax2onnx.

    python3 -m venv /work/venvs/jax && . /work/venvs/jax/bin/activate
    pip install jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 jax2onnx==0.17.1 onnx==1.23.2 onnxruntime==1.32.0
    python models/frameworks/jax/export_jax.py

Writes, next to this script:
  jax_resnet.onnx          fixed batch 1, input x [1, 32, 32, 3] (NHWC, as Flax computes)
  jax_resnet.dynamic.onnx  symbolic batch "B", input x [B, 32, 32, 3]
  jax_mlp.onnx             fixed batch 1, input x [1, 64]
  jax_mlp.dynamic.onnx     symbolic batch "B", input x [B, 64]
  jax_resnet_calib.npy     64 seeded random samples [64, 32, 32, 3] float32
  jax_mlp_calib.npy        64 seeded random samples [64, 64] float32
  MANIFEST.json

Random weights (nnx.Rngs(0)); BatchNorm statistics and affine parameters are set to
random non-trivial values (scale U(0.5, 1.5), bias N(0, 0.1), mean N(0, 0.1),
var U(0.5, 1.5)) so BN is not an identity; BN is used in inference mode
(use_running_average=True). Each export is checked with onnx.checker and
against JAX in onnxruntime (batch 1, and batch 3 for the dynamic files).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from flax import nnx
from jax2onnx import to_onnx

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 21  # jax2onnx's default is 23; 21 is what the rest of the project's fixtures stay near
SEED = 0


def _randomize_bn(bn: nnx.BatchNorm, key: jax.Array) -> None:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = bn.scale[...].shape[0]
    bn.scale[...] = jax.random.uniform(k1, (n,), minval=0.5, maxval=1.5)
    bn.bias[...] = 0.1 * jax.random.normal(k2, (n,))
    bn.mean[...] = 0.1 * jax.random.normal(k3, (n,))
    bn.var[...] = jax.random.uniform(k4, (n,), minval=0.5, maxval=1.5)


class Block(nnx.Module):
    """Identity residual block: relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, ch: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(ch, ch, kernel_size=(3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(ch, use_running_average=True, rngs=rngs)
        self.conv2 = nnx.Conv(ch, ch, kernel_size=(3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(ch, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return nnx.relu(x + h)


class JaxResNet(nnx.Module):
    """Stem conv 3->16, stage 1: 2 identity blocks at 16, stride-2 transition conv 16->32,
    stage 2: 2 identity blocks at 32, global average pool, Dense(10). NHWC."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 16, kernel_size=(3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(16, use_running_average=True, rngs=rngs)
        self.stage1 = nnx.List([Block(16, rngs=rngs), Block(16, rngs=rngs)])
        self.down = nnx.Conv(16, 32, kernel_size=(3, 3), strides=(2, 2), padding="SAME", use_bias=False, rngs=rngs)
        self.down_bn = nnx.BatchNorm(32, use_running_average=True, rngs=rngs)
        self.stage2 = nnx.List([Block(32, rngs=rngs), Block(32, rngs=rngs)])
        self.head = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem_bn(self.stem(x)))
        for b in self.stage1:
            x = b(x)
        x = nnx.relu(self.down_bn(self.down(x)))
        for b in self.stage2:
            x = b(x)
        x = jnp.mean(x, axis=(1, 2))  # global average pool (NHWC)
        return self.head(x)


class JaxMLP(nnx.Module):
    """64 -> 128 -> 128 -> 10 with a residual connection around the middle layer."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(64, 128, rngs=rngs)
        self.fc2 = nnx.Linear(128, 128, rngs=rngs)
        self.fc3 = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.fc1(x))
        h = h + nnx.relu(self.fc2(h))
        return self.fc3(h)


def build_resnet() -> JaxResNet:
    model = JaxResNet(rngs=nnx.Rngs(SEED))
    key = jax.random.PRNGKey(SEED + 1)
    bns = [model.stem_bn, model.down_bn] + [bn for b in (*model.stage1, *model.stage2) for bn in (b.bn1, b.bn2)]
    for bn in bns:
        key, sub = jax.random.split(key)
        _randomize_bn(bn, sub)
    # make the biases of the head non-zero too
    key, sub = jax.random.split(key)
    model.head.bias[...] = 0.1 * jax.random.normal(sub, model.head.bias[...].shape)
    model.eval()
    return model


def build_mlp() -> JaxMLP:
    model = JaxMLP(rngs=nnx.Rngs(SEED))
    key = jax.random.PRNGKey(SEED + 2)
    for lin in (model.fc1, model.fc2, model.fc3):
        key, sub = jax.random.split(key)
        lin.bias[...] = 0.1 * jax.random.normal(sub, lin.bias[...].shape)
    return model


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def io_desc(values) -> list:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
    return out


def export(name: str, model, shape_fixed, shape_dyn) -> list:
    entries = []
    rng = np.random.default_rng(SEED)
    for suffix, spec, batches in ((".onnx", shape_fixed, [1]), (".dynamic.onnx", shape_dyn, [1, 3])):
        path = os.path.join(HERE, name + suffix)
        proto = to_onnx(model, inputs=[spec], model_name=name, opset=OPSET, input_names=["x"], output_names=["logits"])
        fixups = []
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            # jax2onnx 0.17.1: after it folds the NHWC<->NCHW Transposes around the convs of
            # the first stage, the value_info entries keep the old NHWC shapes, so the file
            # fails the checker and onnxruntime refuses it ("Add: Incompatible dimensions").
            # The nodes are right; the annotations are stale: drop them and re-infer.
            del proto.graph.value_info[:]
            proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
            onnx.checker.check_model(proto, full_check=True)
            fixups.append("value_info dropped and re-inferred (jax2onnx left stale NHWC shapes): "
                          + str(e).splitlines()[0][:160])
        onnx.save(proto, path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        worst = 0.0
        for b in batches:
            x = rng.standard_normal((b, *shape_fixed[1:])).astype(np.float32)
            ref = np.asarray(model(jnp.asarray(x)))
            got = sess.run(None, {"x": x})[0]
            err = float(np.max(np.abs(ref - got)))
            tol = 1e-4 * float(np.max(np.abs(ref))) + 1e-5
            assert err <= tol, (path, b, err, tol)
            worst = max(worst, err / max(float(np.max(np.abs(ref))), 1e-12))
        ops: dict = {}
        for n in proto.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        entries.append(
            {
                "file": os.path.basename(path),
                "size": os.path.getsize(path),
                "sha256": sha256(path),
                "inputs": io_desc(proto.graph.input),
                "outputs": io_desc(proto.graph.output),
                "opset": {d.domain or "ai.onnx": d.version for d in proto.opset_import},
                "ir_version": proto.ir_version,
                "node_count": len(proto.graph.node),
                "op_types": dict(sorted(ops.items())),
                "checked_batches": batches,
                "worst_relative_error_vs_jax": worst,
                "calib": f"{name}_calib.npy",
                "fixups": fixups,
            }
        )
        print(f"{os.path.basename(path)}: {os.path.getsize(path)} B, {len(proto.graph.node)} nodes, rel err {worst:.2e}")
    calib = np.random.default_rng(SEED).standard_normal((64, *shape_fixed[1:])).astype(np.float32)
    cpath = os.path.join(HERE, f"{name}_calib.npy")
    np.save(cpath, calib)
    entries.append({"file": os.path.basename(cpath), "size": os.path.getsize(cpath), "sha256": sha256(cpath),
                    "shape": list(calib.shape), "dtype": "float32", "what": "np.random.default_rng(0).standard_normal"})
    return entries


def main() -> None:
    files = []
    files += export("jax_resnet", build_resnet(), (1, 32, 32, 3), ("B", 32, 32, 3))
    files += export("jax_mlp", build_mlp(), (1, 64), ("B", 64))
    for f in files:
        assert f["size"] < 2_000_000, f
    manifest = {
        "generated_by": "models/frameworks/jax/export_jax.py",
        "seed": SEED,
        "tools": {p: version(p) for p in ("jax", "jaxlib", "flax", "jax2onnx", "onnx", "onnx-ir", "onnxruntime", "numpy")},
        "python": sys.version.split()[0],
        "tolerance": "max|ort - jax| <= 1e-4 * max|jax| + 1e-5",
        "files": files,
    }
    with open(os.path.join(HERE, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
