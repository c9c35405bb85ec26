"""Export small Keras models to ONNX with tf2onnx (opset 17), verify them, write MANIFEST.json.

    python models/frameworks/keras/export_keras.py               # everything
    python models/frameworks/keras/export_keras.py keras_resnet  # only these (manifest keeps the rest)

Needs its own environment (NOT the project's .venv):
    python3 -m venv /work/venvs/tf && . /work/venvs/tf/bin/activate
    pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 onnxruntime==1.32.0
    (pulls keras 3.15.1, numpy 2.4.6, protobuf 7.36.2)

Export path: Keras 3's own `model.export(path, format="onnx", input_signature=...,
opset_version=17)`, which is tf2onnx.convert.from_function on the model's concrete
function (plus Keras' numpy-2 patch for tf2onnx). `tf2onnx.convert.from_keras` does not
work with Keras 3 (KeyError on the output 'keras_tensor_N'), so this is the route Keras 3
users have. Channels-last layouts are kept as tf2onnx emits them (NHWC input, Transposes
around every Conv), Dense on a 3-D tensor is a Tensordot (Shape/Gather/Concat -> Reshape
-> MatMul -> Reshape, targets computed at runtime).

Per model NAME:
  NAME.onnx        dynamic batch: tf.TensorSpec((None, ...)), input name "input"
  NAME.b1.onnx     fixed batch 1
  NAME_calib.npy   64 float32 samples shaped like the input (N(0, 1), seeded)
Every file: onnx.checker.check_model(full_check=True), and onnxruntime against Keras
(max |ort - keras| < 1e-4) on a random input (batch 3 for the dynamic file, 1 for b1).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # exact fp32 matmuls in the reference

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
import tf2onnx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "MANIFEST.json")
OPSET = 17
ATOL = 1e-4
N_CALIB = 64
MAX_BYTES = 2 * 1024 * 1024
INPUT_NAME = "input"


# ----------------------------------------------------------------------------- models

def conv_bn(x, filters, kernel, strides=1, relu=True, name=None):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters, strides, name):
    """conv-BN-ReLU-conv-BN + shortcut, ReLU. Identity shortcut unless strides/width change."""
    y = conv_bn(x, filters, 3, strides, True, f"{name}_a")
    y = conv_bn(y, filters, 3, 1, False, f"{name}_b")
    if strides != 1 or x.shape[-1] != filters:
        x = conv_bn(x, filters, 1, strides, False, f"{name}_proj")
    x = layers.Add(name=f"{name}_add")([x, y])
    return layers.ReLU(name=f"{name}_out")(x)


def keras_resnet() -> keras.Model:
    """Stem 3x3/16; stages 16, 32, 48 of 3 identity blocks; a strided projection block
    (3x3/s2 + 1x1/s2 conv-BN shortcut) between stages; GAP; Dense(10)."""
    inp = keras.Input((32, 32, 3), name=INPUT_NAME)
    x = conv_bn(inp, 16, 3, 1, True, "stem")
    widths = (16, 32, 48)
    for s, w in enumerate(widths):
        if s > 0:
            x = basic_block(x, w, 2, f"s{s}_down")
        for b in range(3):
            x = basic_block(x, w, 1, f"s{s}_b{b}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(10, name="fc")(x)
    return keras.Model(inp, out, name="keras_resnet")


def keras_mobilenetv2() -> keras.Model:
    inp = keras.Input((32, 32, 3), name=INPUT_NAME)
    # classifier_activation=None: logits, like the rest of the zoo (the default softmax
    # would make the 1e-4 check against Keras nearly vacuous)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                          classes=10, input_tensor=inp, classifier_activation=None)
    return keras.Model(inp, base.output, name="keras_mobilenetv2")


def gelu_erf(x):
    """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): Keras' own "gelu" (tf.nn.gelu, exact) is
    built on Erfc in TF 2.21, which tf2onnx 1.17 cannot convert (it writes the TF op
    through and the checker rejects the file), so the exact form is spelled with erf."""
    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


def gelu_tanh(x):
    """Keras' tanh-approximate GELU (converts: Tanh, Pow/Mul)."""
    return keras.activations.gelu(x, approximate=True)


def encoder_layer(x, i, d=32, heads=4, key_dim=8, ff=64):
    a = layers.MultiHeadAttention(num_heads=heads, key_dim=key_dim, name=f"l{i}_mha")(x, x)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"l{i}_ln1")(layers.Add(name=f"l{i}_add1")([x, a]))
    f = layers.Dense(ff, activation=gelu_erf, name=f"l{i}_ff1")(x)
    f = layers.Dense(d, name=f"l{i}_ff2")(f)
    return layers.LayerNormalization(epsilon=1e-6, name=f"l{i}_ln2")(layers.Add(name=f"l{i}_add2")([x, f]))


def keras_encoder() -> keras.Model:
    """[batch, 16, 32] floats -> Dense(32) input projection ->
    2 post-LN encoder layers (MHA 4x8, Dense 64 gelu, Dense 32) -> GAP1D -> Dense(10)."""
    inp = keras.Input((16, 32), name=INPUT_NAME)
    x = layers.Dense(32, name="in_proj")(inp)
    for i in range(2):
        x = encoder_layer(x, i)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    out = layers.Dense(10, name="head")(x)
    return keras.Model(inp, out, name="keras_encoder")


def convnext_block(x, dim, name):
    y = layers.DepthwiseConv2D(7, padding="same", name=f"{name}_dw")(x)
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln")(y)
    y = layers.Dense(4 * dim, name=f"{name}_pw1")(y)
    y = layers.Activation(gelu_tanh, name=f"{name}_gelu")(y)
    y = layers.Dense(dim, name=f"{name}_pw2")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def keras_convnext() -> keras.Model:
    """Patchify stem Conv 2x2/s2 (24) + LN; stage 1: 3 blocks at 24; downsample LN + Conv
    2x2/s2 (48); stage 2: 3 blocks at 48; GAP; LN; Dense(10). Three blocks per stage so
    that --method layers (every stage keeps 2, the first block never goes) has a choice."""
    inp = keras.Input((32, 32, 3), name=INPUT_NAME)
    x = layers.Conv2D(24, 2, strides=2, name="stem_conv")(inp)
    x = layers.LayerNormalization(epsilon=1e-6, name="stem_ln")(x)
    for b in range(3):
        x = convnext_block(x, 24, f"s0_b{b}")
    x = layers.LayerNormalization(epsilon=1e-6, name="down_ln")(x)
    x = layers.Conv2D(48, 2, strides=2, name="down_conv")(x)
    for b in range(3):
        x = convnext_block(x, 48, f"s1_b{b}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="head_ln")(x)
    out = layers.Dense(10, name="head")(x)
    return keras.Model(inp, out, name="keras_convnext")


MODELS = {
    "keras_resnet": keras_resnet,
    "keras_mobilenetv2": keras_mobilenetv2,
    "keras_encoder": keras_encoder,
    "keras_convnext": keras_convnext,
}


def randomize_norms(model: keras.Model, rng: np.random.Generator) -> None:
    """As the PyTorch zoo does: BN/LN get random affine params (weight U(0.5, 1.5), bias
    N(0, 0.1)), and BN running statistics are calibrated on random inputs (one training-mode
    pass with momentum 0, so moving stats = that batch's stats) rather than left at 0/1,
    which at random init lets activations blow up or die (MobileNetV2 then gives the same
    output for every input)."""
    bns = []
    for layer in model.layers:
        if isinstance(layer, (layers.BatchNormalization, layers.LayerNormalization)):
            w = layer.get_weights()
            w[0] = rng.uniform(0.5, 1.5, w[0].shape).astype(np.float32)
            w[1] = rng.normal(0, 0.1, w[1].shape).astype(np.float32)
            layer.set_weights(w)
        if isinstance(layer, layers.BatchNormalization):
            bns.append((layer, layer.momentum))
            layer.momentum = 0.0
    if bns:
        x = rng.standard_normal((256, *model.input_shape[1:])).astype(np.float32)
        model(x, training=True)
        for layer, momentum in bns:
            layer.momentum = momentum


# ----------------------------------------------------------------------------- export + check

def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def dims(vi) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
            for d in vi.type.tensor_type.shape.dim]


def export(model: keras.Model, path: str, shape: tuple) -> None:
    spec = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    # tf2onnx numbers generated names (the batch dim_param "unk__N" among them) with a
    # process-wide counter; restart it so names do not depend on what ran before. Files
    # are still not byte-reproducible: tf2onnx puts Python id()s into Einsum-derived names
    # and keeps an arbitrary one of several equal constants. Weights are deterministic.
    tf2onnx.utils.INTERNAL_NAME = 1
    model.export(path, format="onnx", input_signature=spec, opset_version=OPSET, verbose=False)


def check(model: keras.Model, path: str, batch: int, rng: np.random.Generator) -> float:
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    x = rng.standard_normal((batch, *model.input_shape[1:])).astype(np.float32)
    got = sess.run(None, {inp.name: x})[0]
    want = model(x, training=False).numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float(np.abs(got - want).max())
    assert err < ATOL, f"{path}: max |ort - keras| = {err}"
    return err


def entry(path: str, err: float, batch: int) -> dict:
    proto = onnx.load(path)
    ops: dict = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "size_bytes": os.path.getsize(path),
        "sha256": sha256(path),
        "opset": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "ir_version": proto.ir_version,
        "inputs": [{"name": i.name, "shape": dims(i)} for i in proto.graph.input],
        "outputs": [{"name": o.name, "shape": dims(o)} for o in proto.graph.output],
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(ops.items())),
        "initializers": len(proto.graph.initializer),
        "check": {"full_check": True, "ort_batch": batch, "max_abs_err": err},
    }


def build(name: str) -> keras.Model:
    seed = sorted(MODELS).index(name)
    keras.utils.set_random_seed(seed)
    model = MODELS[name]()
    randomize_norms(model, np.random.default_rng(seed))
    return model


def main(names: list[str]) -> None:
    manifest = {"files": {}}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            manifest = json.load(f)
    manifest["tools"] = {
        "tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    manifest["exporter"] = "keras Model.export(format='onnx') -> tf2onnx.convert.from_function"
    manifest["opset"] = OPSET
    for name in names:
        model = build(name)
        in_shape = tuple(model.input_shape[1:])
        print(f"{name}: {model.count_params()} params, input {in_shape}", flush=True)
        rng = np.random.default_rng(1000 + sorted(MODELS).index(name))
        for suffix, batch, check_batch in ((".onnx", None, 3), (".b1.onnx", 1, 1)):
            path = os.path.join(HERE, name + suffix)
            export(model, path, (batch, *in_shape))
            err = check(model, path, check_batch, rng)
            assert os.path.getsize(path) < MAX_BYTES, f"{path} is {os.path.getsize(path)} bytes"
            manifest["files"][name + suffix] = {"model": name, "batch": "dynamic" if batch is None else batch,
                                                "params": model.count_params(), **entry(path, err, check_batch)}
            print(f"  {name + suffix}: {os.path.getsize(path)} bytes, max err {err:.2e}", flush=True)
        calib = rng.standard_normal((N_CALIB, *in_shape)).astype(np.float32)
        cpath = os.path.join(HERE, f"{name}_calib.npy")
        np.save(cpath, calib)
        manifest["files"][f"{name}_calib.npy"] = {"model": name, "size_bytes": os.path.getsize(cpath),
                                                  "sha256": sha256(cpath), "shape": list(calib.shape),
                                                  "dtype": "float32", "distribution": "N(0, 1)"}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    args = sys.argv[1:] or sorted(MODELS)
    unknown = [a for a in args if a not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s): {unknown}; known: {sorted(MODELS)}")
    main(args)
