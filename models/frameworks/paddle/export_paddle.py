"""Export small PaddlePaddle models to ONNX with paddle2onnx, as users do.

    python models/frameworks/paddle/export_paddle.py            # all models
    python models/frameworks/paddle/export_paddle.py paddle_crnn  # only these

Needs its own environment (never the project's .venv):

    python3 -m venv /work/venvs/paddle && . /work/venvs/paddle/bin/activate
    pip install paddlepaddle==3.3.1 paddle2onnx==2.1.0 onnx==1.17.0 onnxruntime==1.32.0 \
        onnxoptimizer==0.3.13 polygraphy==0.53.6 onnx_graphsurgeon==0.6.1 numpy==2.4.6

Every model is built in code with seeded random weights (no downloads). BatchNorm
layers get random affine parameters and running statistics calibrated on random
inputs, so BN is not an identity. Export goes through `paddle.onnx.export` (which is
`paddle.jit.save` + `paddle2onnx.export` with its default Polygraphy constant folding),
with an InputSpec whose batch is None: paddle2onnx names that dim
`DynamicDimension.N` (a dim_param) and writes -1 into the Reshape shape constants.

Each file is checked with `onnx.checker.check_model(full_check=True)` and run in
ONNX Runtime against Paddle's own output (max abs diff < 1e-4, batch 1 and 2).
Writes <name>.onnx, <name>_calib.npy (seeded N(0,1) float32 samples, batch first: 64,
or 48 for the CRNN to stay under 2 MB), MANIFEST.json.
"""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import sys
import tempfile
import contextlib

import numpy as np

os.environ.setdefault("FLAGS_use_mkldnn", "0")  # plain CPU kernels: reproducible reference outputs

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import paddle  # noqa: E402
import paddle.nn as nn  # noqa: E402
import paddle2onnx  # noqa: E402
from paddle.vision.models.resnet import BasicBlock  # noqa: E402
from paddle.vision.models.shufflenetv2 import (  # noqa: E402
    InvertedResidual,
    InvertedResidualDS,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
CALIB_N = 64
TOL = 1e-4


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


class SmallResNet18(nn.Layer):
    """paddle.vision ResNet-18 layout (7x7/2 stem, max-pool, 4 stages x 2 BasicBlocks,
    1x1/2 conv+BN downsample shortcuts, avg-pool, flatten, fc) built from paddle's own
    BasicBlock, with widths 8/16/32/64 instead of 64/128/256/512 (the full-width
    resnet18(num_classes=10) is 44 MB as ONNX)."""

    def __init__(self, widths=(8, 16, 32, 64), num_classes=10):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2D(3, widths[0], 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], 2, 1)
        self.layer2 = self._make_layer(widths[1], 2, 2)
        self.layer3 = self._make_layer(widths[2], 2, 2)
        self.layer4 = self._make_layer(widths[3], 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2D((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2D(self.inplanes, planes, 1, stride=stride, bias_attr=False),
                nn.BatchNorm2D(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = paddle.flatten(self.avgpool(x), 1)
        return self.fc(x)


class TinyShuffleNet(nn.Layer):
    """ShuffleNetV2-style, 2 stages, from paddle.vision's own InvertedResidualDS /
    InvertedResidual blocks (split, concat, channel shuffle = reshape to
    [N, 2, C/2, H, W], transpose, reshape back)."""

    def __init__(self, channels=(24, 48, 96), last=128, num_classes=10):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2D(3, channels[0], 3, stride=1, padding=1, bias_attr=False),
            nn.BatchNorm2D(channels[0]),
            nn.ReLU(),
        )
        stages = []
        cin = channels[0]
        for cout in channels[1:]:
            stages += [
                InvertedResidualDS(cin, cout, stride=2),
                InvertedResidual(cout, cout, stride=1),
                InvertedResidual(cout, cout, stride=1),
            ]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.last_conv = nn.Sequential(
            nn.Conv2D(cin, last, 1, bias_attr=False), nn.BatchNorm2D(last), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.last_conv(self.stages(self.conv1(x)))
        return self.fc(paddle.flatten(self.pool(x), 1))


class TinyCRNN(nn.Layer):
    """PaddleOCR CRNN shape (rec backbone -> Im2Seq -> EncoderWithRNN -> CTCHead):
    conv/BN/ReLU backbone whose pools take H 32 -> 1 and W 100 -> 25, squeeze(2) and
    transpose to [N, T=25, C], a 2-layer bidirectional LSTM (or, with rnn="linear",
    two Linear layers), and a per-timestep Linear over 37 classes."""

    def __init__(self, rnn="lstm", num_classes=37, hidden=32):
        super().__init__()

        def cbr(cin, cout):
            return [nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False),
                    nn.BatchNorm2D(cout), nn.ReLU()]

        self.backbone = nn.Sequential(
            *cbr(3, 16), nn.MaxPool2D(2, 2),                 # 16 x 50
            *cbr(16, 32), nn.MaxPool2D(2, 2),                # 8 x 25
            *cbr(32, 48), nn.MaxPool2D((2, 1), (2, 1)),      # 4 x 25
            *cbr(48, 64), nn.MaxPool2D((2, 1), (2, 1)),      # 2 x 25
            *cbr(64, 64), nn.MaxPool2D((2, 1), (2, 1)),      # 1 x 25
        )
        self.rnn_kind = rnn
        if rnn == "lstm":
            self.rnn = nn.LSTM(64, hidden, num_layers=2, direction="bidirectional")
            feat = 2 * hidden
        else:
            self.rnn = nn.Sequential(nn.Linear(64, 2 * hidden), nn.ReLU(),
                                     nn.Linear(2 * hidden, 2 * hidden), nn.ReLU())
            feat = 2 * hidden
        self.head = nn.Linear(feat, num_classes)

    def forward(self, x):
        x = self.backbone(x)
        x = x.squeeze(axis=2).transpose([0, 2, 1])  # Im2Seq: [N, T, C]
        if self.rnn_kind == "lstm":
            x, _ = self.rnn(x)
        else:
            x = self.rnn(x)
        return self.head(x)


def build(name):
    if name.startswith("paddle_resnet18"):
        return SmallResNet18()
    if name == "paddle_mobilenetv3":
        return paddle.vision.models.mobilenet_v3_small(scale=0.35, num_classes=10)
    if name == "paddle_shufflenet":
        return TinyShuffleNet()
    if name == "paddle_crnn":
        return TinyCRNN("lstm")
    raise KeyError(name)


# name -> (builder name, input shape with None batch, opset, what it is)
MODELS = {
    "paddle_resnet18": dict(shape=[None, 3, 32, 32], opset=13,
                            what="ResNet-18 layout (paddle BasicBlock), widths 8-64, 10 classes"),
    "paddle_resnet18.fixed": dict(shape=[1, 3, 32, 32], opset=13,
                                  what="the same network and weights, batch fixed to 1"),
    "paddle_mobilenetv3": dict(shape=[None, 3, 32, 32], opset=13,
                               what="paddle.vision mobilenet_v3_small(scale=0.35, num_classes=10)"),
    "paddle_shufflenet": dict(shape=[None, 3, 32, 32], opset=11,
                              what="ShuffleNetV2-style, 2 stages, channel shuffle (paddle blocks)"),
    # 48 calibration samples, not 64: 64 x 3 x 32 x 100 float32 is 2.46 MB (> 2 MB)
    "paddle_crnn": dict(shape=[None, 3, 32, 100], opset=11, calib_n=48,
                        what="CRNN: conv backbone -> Im2Seq -> 2-layer BiLSTM -> Linear(37) per step"),
}


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------


def randomise(model, shape, seed):
    """Seeded default init, then BN affine U(0.5,1.5)/N(0,0.1) and BN running stats
    set to the batch statistics of 64 random inputs (momentum 0, one train pass)."""
    rng = np.random.default_rng(seed + 1)
    bns = [m for m in model.sublayers() if isinstance(m, nn.layer.norm._BatchNormBase)]
    for bn in bns:
        c = bn.weight.shape[0]
        bn.weight.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
        bn.bias.set_value(rng.normal(0, 0.1, c).astype("float32"))
    saved = [bn._momentum for bn in bns]
    for bn in bns:
        bn._momentum = 0.0
    model.train()
    x = rng.standard_normal([64] + list(shape[1:])).astype("float32")
    with paddle.no_grad():
        model(paddle.to_tensor(x))
    for bn, m in zip(bns, saved):
        bn._momentum = m
    model.eval()


# ---------------------------------------------------------------------------
# export + checks
# ---------------------------------------------------------------------------


def dims(value_info):
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else
                   (d.dim_value if d.HasField("dim_value") else "?"))
    return out


def export(model, path, shape, opset):
    spec = [paddle.static.InputSpec(list(shape), "float32", "x")]  # InputSpec turns None into -1 in place
    if os.path.exists(path):
        os.remove(path)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "model")
        paddle.onnx.export(model, prefix, input_spec=spec, opset_version=opset)
        if not os.path.exists(prefix + ".onnx"):  # paddle2onnx logs errors, never raises
            raise RuntimeError(f"paddle2onnx wrote nothing for {path}")
        os.replace(prefix + ".onnx", path)


def check(model, path, shape):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED + 7)
    errs = []
    for batch in ([1, 2] if shape[0] is None else [shape[0]]):
        x = rng.standard_normal([batch] + list(shape[1:])).astype("float32")
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x)).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        if got.shape != ref.shape:
            raise AssertionError(f"{path}: ORT {got.shape} vs Paddle {ref.shape}")
        errs.append(float(np.abs(got - ref).max()))
    err = max(errs)
    if not err < TOL:
        raise AssertionError(f"{path}: max abs diff {err} >= {TOL}")
    return m, err, float(np.abs(ref).max())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def versions():
    import onnxoptimizer  # noqa: F401
    import polygraphy
    out = {"paddlepaddle": paddle.__version__, "paddle2onnx": paddle2onnx.__version__,
           "onnx": onnx.__version__, "onnxruntime": ort.__version__,
           "polygraphy": polygraphy.__version__, "numpy": np.__version__,
           "python": sys.version.split()[0]}
    try:
        import onnx_graphsurgeon
        out["onnx_graphsurgeon"] = onnx_graphsurgeon.__version__
    except ImportError:
        pass
    return out


def main(names):
    paddle.set_device("cpu")
    manifest_path = os.path.join(HERE, "MANIFEST.json")
    manifest = {"tool_versions": versions(), "models": {}}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest["models"] = json.load(f).get("models", {})
    cache = {}
    for name in names:
        cfg = MODELS[name]
        base = name.split(".")[0]
        if base not in cache:  # the .fixed variant shares its network and weights
            paddle.seed(SEED)
            np.random.seed(SEED)
            model = build(name)
            randomise(model, cfg["shape"], SEED)
            cache[base] = model
        model = cache[base]
        path = os.path.join(HERE, name + ".onnx")
        with contextlib.redirect_stdout(io.StringIO()):
            export(model, path, cfg["shape"], cfg["opset"])
        m, err, scale = check(model, path, cfg["shape"])
        entry = {
            "file": name + ".onnx",
            "what": cfg["what"],
            "sha256": sha256(path),
            "bytes": os.path.getsize(path),
            "opset": m.opset_import[0].version,
            "ir_version": m.ir_version,
            "export": f"paddle.onnx.export(InputSpec({cfg['shape']}, 'float32', 'x'), "
                      f"opset_version={cfg['opset']}) -> paddle2onnx + polygraphy folding",
            "inputs": {i.name: dims(i) for i in m.graph.input},
            "outputs": {o.name: dims(o) for o in m.graph.output},
            "nodes": len(m.graph.node),
            "op_types": dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items())),
            "initializers": len(m.graph.initializer),
            "params": int(sum(np.prod(t.dims) for t in m.graph.initializer)),
            "max_abs_diff_vs_paddle": err,
            "max_abs_output": scale,
        }
        if base == name:
            calib = os.path.join(HERE, f"{name}_calib.npy")
            rng = np.random.default_rng(SEED + 100)
            n = cfg.get("calib_n", CALIB_N)
            np.save(calib, rng.standard_normal([n] + list(cfg["shape"][1:])).astype("float32"))
            entry["calib"] = {"file": os.path.basename(calib), "sha256": sha256(calib),
                              "shape": [n] + list(cfg["shape"][1:]), "dtype": "float32"}
        else:
            entry["calib"] = {"file": f"{base}_calib.npy"}
        for f in (path, os.path.join(HERE, entry["calib"]["file"])):
            if os.path.getsize(f) > 2 * 1000 * 1000:
                raise AssertionError(f"{f} is {os.path.getsize(f)} bytes (> 2 MB)")
        manifest["models"][name] = entry
        print(f"{name}: {entry['bytes']} B, opset {entry['opset']}, inputs {entry['inputs']}, "
              f"outputs {entry['outputs']}, {entry['nodes']} nodes, max diff {err:.2e} "
              f"(|out| {scale:.2f})")
    manifest["models"] = dict(sorted(manifest["models"].items()))
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(MODELS)
    unknown = [n for n in wanted if n not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    main(wanted)
