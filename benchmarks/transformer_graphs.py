"""Transformer graphs with random weights, built with NumPy and onnx.helper (no torch):
a ViT (ViT-B/16 at its default sizes) and a Llama-like decoder (about 1B parameters at
its default sizes), for `benchmarks/gpu.py`.

    python benchmarks/transformer_graphs.py vit /tmp/vit_b16.onnx
    python benchmarks/transformer_graphs.py decoder /tmp/decoder_1b.onnx   # + decoder_1b.onnx.data (4.2 GB)

Why not export them: the GPU machine these benchmarks run on has no network and
probably no torch. So the graphs copy, node for node, what PyTorch's dynamo exporter
(opset 20) writes for the same modules — see models/transformers/vit.dynamo.onnx and
llama.dynamo.onnx — since onnxprune finds attention heads and MLP neurons by the
patterns exporters produce, not by names:

- every linear layer is `MatMul(x, W[in, out])` (+ `Add(·, bias)` where the module has a
  bias), so a neuron is a column of W and a row of the next W;
- attention: q, k, v projections, `Reshape` to `[-1, seq, heads, head_dim]` (a constant
  shape: the dynamo exporter folds static sizes into it, batch stays -1), `Transpose` to
  `[b, h, s, d]` (k to `[b, h, d, s]`), `MatMul` q·kᵀ, a scale (`Mul` by 1/√d here),
  `Softmax`, `MatMul` ·v, `Transpose` back, `Reshape` to `[-1, seq, width]`, the output
  projection and the residual `Add`;
- pre-norm residual blocks: ViT with `LayerNormalization` and a GELU MLP, the decoder
  with RMSNorm as exporters decompose it (Pow, ReduceMean, Add ε, Sqrt, Reciprocal, Mul,
  Mul γ), rotary embeddings (Slice halves, Neg, Concat, Mul cos/sin), an additive causal
  mask and a SwiGLU MLP (SiLU as x·Sigmoid(x)).

Sizes are arguments, so a test builds the same graphs small. The batch is dynamic
(`batch`), everything else static: the decoder has a fixed sequence length and no KV
cache. Weights are N(0, 1/fan_in) float32, drawn tensor by tensor from one seeded
generator; nothing is trained, so only shapes, costs and timings mean anything.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20  # what the dynamo exporter writes; Gelu is an ONNX op from opset 20
ALIGN = 4096  # external tensors start on a page boundary: a reader can memory-map each in whole pages

VIT_B16 = {"image": 224, "patch": 16, "width": 768, "heads": 12, "mlp": 3072, "layers": 12, "classes": 1000}
# Llama-like at ~1.04 B parameters: 18 x (4 x 2048² attention + 3 x 2048 x 5504 SwiGLU)
# + a 32000 x 2048 embedding and an untied 2048 x 32000 head, in float32 4.2 GB.
DECODER_1B = {"width": 2048, "heads": 16, "mlp": 5504, "layers": 18, "vocab": 32000, "seq": 128}


class _Builder:
    """Nodes and initializers in exporter order, with dynamo-style value names. Weight
    matrices are recorded and drawn at the end (`finish`), in parallel, straight into
    their external-data file when given one."""

    def __init__(self, seed: int):
        self.seed = seed
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.weights: list[tuple[str, tuple[int, ...], float]] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def const(self, array, dtype=np.int64) -> str:
        return self.init(self.name("val"), np.asarray(array, dtype=dtype))

    def weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        self.weights.append((name, shape, 1.0 / np.sqrt(fan_in)))
        return name

    def _draw(self, index: int) -> np.ndarray:
        """Weight `index`: N(0, 1/fan_in) float32 from a stream of its own (seed, index),
        so the values do not depend on how many threads draw them."""
        _, shape, scale = self.weights[index]
        w = np.random.default_rng([self.seed, index]).standard_normal(shape, dtype=np.float32)
        w *= np.float32(scale)
        return w

    def _drawn(self):
        """(index, array) in order, drawn by a thread per core a few tensors ahead (NumPy's
        generators fill arrays without the GIL): the 1B decoder's 4.2 GB in seconds
        with 16 cores, and at most a few tensors in memory at once."""
        workers = min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for index in range(len(self.weights)):
                pending.append((index, pool.submit(self._draw, index)))
                if len(pending) > 2 * workers:
                    i, future = pending.popleft()
                    yield i, future.result()
            while pending:
                i, future = pending.popleft()
                yield i, future.result()

    def finish(self, name: str, inputs, outputs, path: str | None) -> onnx.ModelProto:
        """The model; with `path`, saved there with every weight matrix in one external
        data file `<path>.data` (written once, as it is drawn: a model over 2 GB cannot be
        one protobuf, and smaller ones take the same path so a quick run exercises it)."""
        weights: list[onnx.TensorProto] = []
        if path is None:
            weights = [numpy_helper.from_array(w, self.weights[i][0]) for i, w in self._drawn()]
        else:
            location = os.path.basename(path) + ".data"
            with open(path + ".data", "wb") as data:
                for i, w in self._drawn():
                    data.write(b"\0" * (-data.tell() % ALIGN))
                    offset = data.tell()
                    data.write(memoryview(w).cast("B"))
                    weights.append(_external(self.weights[i][0], w, location, offset))
        graph = helper.make_graph(self.nodes, name, inputs, outputs, weights + self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10,
                                  producer_name="onnxprune benchmarks/transformer_graphs.py")
        if path is not None:
            onnx.save_model(model, path)  # the graph and the small constants; weights are already out
        return model

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"node_{out}", **attrs))
        return out

    def linear(self, x: str, name: str, d_in: int, d_out: int, bias: bool) -> str:
        y = self.op("MatMul", [x, self.weight(f"{name}.weight", (d_in, d_out), d_in)], stem="val")
        if bias:
            y = self.op("Add", [y, self.init(f"{name}.bias", np.zeros(d_out, np.float32))], stem="linear")
        return y

    def attention(self, x: str, prefix: str, width: int, heads: int, seq: int, bias: bool,
                  rotary: tuple[str, str] | None = None, mask: str | None = None) -> str:
        dh = width // heads
        split = self.const([-1, seq, heads, dh])
        q, k, v = (self.op("Reshape", [self.linear(x, f"{prefix}.{p}", width, width, bias), split], stem="view",
                           allowzero=1) for p in ("q_proj", "k_proj", "v_proj"))
        q = self.op("Transpose", [q], stem="transpose", perm=[0, 2, 1, 3])
        k = self.op("Transpose", [k], stem="transpose", perm=[0, 2, 1, 3])
        v = self.op("Transpose", [v], stem="transpose", perm=[0, 2, 1, 3])
        if rotary is not None:
            q, k = self.rope(q, dh, *rotary), self.rope(k, dh, *rotary)
        kt = self.op("Transpose", [k], stem="transpose", perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [q, kt], stem="matmul")
        scores = self.op("Mul", [scores, self.const(1.0 / np.sqrt(dh), np.float32)], stem="mul")
        if mask is not None:
            scores = self.op("Add", [scores, mask], stem="add")
        probs = self.op("Softmax", [scores], stem="softmax", axis=-1)
        ctx = self.op("MatMul", [probs, v], stem="matmul")
        ctx = self.op("Transpose", [ctx], stem="transpose", perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const([-1, seq, width])], stem="view", allowzero=1)
        return self.linear(ctx, f"{prefix}.o_proj", width, width, bias)

    def rope(self, x: str, dh: int, cos: str, sin: str) -> str:
        """x·cos + rotate_half(x)·sin, rotate_half as the exporter writes it."""
        half = dh // 2
        axis, step = self.const([3]), self.const([1])
        first = self.op("Slice", [x, self.const([0]), self.const([half]), axis, step], stem="slice")
        second = self.op("Slice", [x, self.const([half]), self.const([np.iinfo(np.int64).max]), axis, step],
                         stem="slice")
        rotated = self.op("Concat", [self.op("Neg", [second], stem="neg"), first], stem="cat", axis=-1)
        return self.op("Add", [self.op("Mul", [x, cos], stem="mul"), self.op("Mul", [rotated, sin], stem="mul")],
                       stem="add")

    def layer_norm(self, x: str, name: str, width: int) -> str:
        return self.op("LayerNormalization", [x, self.init(f"{name}.weight", np.ones(width, np.float32)),
                                              self.init(f"{name}.bias", np.zeros(width, np.float32))],
                       stem="layer_norm", axis=-1, epsilon=1e-6)

    def rms_norm(self, x: str, name: str, width: int) -> str:
        mean = self.op("ReduceMean", [self.op("Pow", [x, self.const(2.0, np.float32)], stem="pow"),
                                      self.const([-1])], stem="mean", keepdims=1)
        denom = self.op("Sqrt", [self.op("Add", [mean, self.const(1e-6, np.float32)], stem="add")], stem="val")
        normed = self.op("Mul", [x, self.op("Reciprocal", [denom], stem="rsqrt")], stem="mul")
        return self.op("Mul", [normed, self.init(f"{name}.weight", np.ones(width, np.float32))], stem="mul")


def _external(name: str, array: np.ndarray, location: str, offset: int) -> onnx.TensorProto:
    """A TensorProto whose data lies in `location` at `offset`, as onnx's
    external_data_helper.set_external_data records it."""
    tensor = onnx.TensorProto(name=name, dims=array.shape, data_type=TensorProto.FLOAT,
                              data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", offset), ("length", array.nbytes)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def vit(image: int = 224, patch: int = 16, width: int = 768, heads: int = 12, mlp: int = 3072, layers: int = 12,
        classes: int = 1000, seed: int = 0, path: str | None = None) -> onnx.ModelProto:
    """ViT: Conv patch embedding, class token, position embedding, `layers` pre-norm
    blocks (attention with biases, GELU MLP), final LayerNorm, the class token's row
    (Gather) into a Gemm head. Input `pixel_values [batch, 3, image, image]`, output
    `logits [batch, classes]`."""
    b = _Builder(seed)
    grid = image // patch
    seq = grid * grid + 1
    conv = b.op("Conv", ["pixel_values", b.weight("patch_embed.weight", (width, 3, patch, patch), 3 * patch * patch),
                         b.init("patch_embed.bias", np.zeros(width, np.float32))],
                stem="conv2d", kernel_shape=[patch, patch], strides=[patch, patch], pads=[0, 0, 0, 0])
    tokens = b.op("Transpose", [b.op("Reshape", [conv, b.const([-1, width, grid * grid])], stem="view", allowzero=1)],
                  stem="transpose", perm=[0, 2, 1])
    batch = b.op("Shape", ["pixel_values"], stem="val", start=0, end=1)
    cls_shape = b.op("Concat", [batch, b.const([1]), b.const([1])], stem="val", axis=0)
    cls = b.op("Expand", [b.weight("cls_token", (1, 1, width), width), cls_shape], stem="expand")
    x = b.op("Concat", [cls, tokens], stem="cat", axis=1)
    x = b.op("Add", [x, b.weight("pos_embed", (1, seq, width), width)], stem="add")
    for i in range(layers):
        p = f"blocks.{i}"
        h = b.attention(b.layer_norm(x, f"{p}.norm1", width), f"{p}.attn", width, heads, seq, bias=True)
        x = b.op("Add", [x, h], stem="add")
        h = b.linear(b.layer_norm(x, f"{p}.norm2", width), f"{p}.fc1", width, mlp, bias=True)
        h = b.linear(b.op("Gelu", [h], stem="gelu"), f"{p}.fc2", mlp, width, bias=True)
        x = b.op("Add", [x, h], stem="add")
    x = b.layer_norm(x, "norm", width)
    first = b.op("Gather", [x, b.const(0)], stem="select", axis=1)
    b.op("Gemm", [first, b.weight("head.weight", (classes, width), width),
                  b.init("head.bias", np.zeros(classes, np.float32))], stem="linear", transB=1)
    b.nodes[-1].output[0] = "logits"  # the graph output keeps the name exporters give it
    return b.finish("vit", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                                            ["batch", 3, image, image])],
                    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], path)


def decoder(width: int = 2048, heads: int = 16, mlp: int = 5504, layers: int = 18, vocab: int = 32000,
            seq: int = 128, seed: int = 0, path: str | None = None) -> onnx.ModelProto:
    """Llama-like decoder: token embedding (Gather), `layers` pre-RMSNorm blocks (rotary
    attention without biases under a causal mask, SwiGLU MLP), final RMSNorm, an untied
    head. Input `input_ids [batch, seq]` (int64), output `logits [batch, seq, vocab]`;
    the residual width is fixed by the embedding and the head (prune it with --hidden 0)."""
    b = _Builder(seed)
    dh = width // heads
    inv = 1.0 / 10000 ** (np.arange(0, dh, 2, dtype=np.float64) / dh)
    angles = np.outer(np.arange(seq), inv)
    angles = np.concatenate([angles, angles], axis=-1)[None, None]  # [1, 1, seq, dh]
    cos = b.init("rotary.cos", np.cos(angles).astype(np.float32))
    sin = b.init("rotary.sin", np.sin(angles).astype(np.float32))
    causal = np.triu(np.full((seq, seq), np.finfo(np.float32).min, np.float32), k=1)[None, None]
    mask = b.init("causal_mask", causal)
    x = b.op("Gather", [b.weight("embed_tokens.weight", (vocab, width), width), "input_ids"], stem="embedding",
             axis=0)
    for i in range(layers):
        p = f"layers.{i}"
        h = b.attention(b.rms_norm(x, f"{p}.input_layernorm", width), f"{p}.self_attn", width, heads, seq,
                        bias=False, rotary=(cos, sin), mask=mask)
        x = b.op("Add", [x, h], stem="add")
        h = b.rms_norm(x, f"{p}.post_attention_layernorm", width)
        gate = b.linear(h, f"{p}.mlp.gate_proj", width, mlp, bias=False)
        silu = b.op("Mul", [gate, b.op("Sigmoid", [gate], stem="sigmoid")], stem="silu")
        up = b.linear(h, f"{p}.mlp.up_proj", width, mlp, bias=False)
        h = b.linear(b.op("Mul", [silu, up], stem="mul"), f"{p}.mlp.down_proj", mlp, width, bias=False)
        x = b.op("Add", [x, h], stem="add")
    x = b.rms_norm(x, "norm", width)
    b.linear(x, "lm_head", width, vocab, bias=False)
    b.nodes[-1].output[0] = "logits"
    return b.finish("decoder", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq])],
                     [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", seq, vocab])], path)


def parameters(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["vit", "decoder"])
    parser.add_argument("path")
    parser.add_argument("--layers", type=int, default=None, help="override the layer count")
    args = parser.parse_args(argv)
    sizes = dict(VIT_B16 if args.kind == "vit" else DECODER_1B)
    if args.layers:
        sizes["layers"] = args.layers
    start = time.perf_counter()
    model = (vit if args.kind == "vit" else decoder)(**sizes, path=args.path)
    print(f"{args.kind} {sizes}: {parameters(model) / 1e6:.1f} M parameters, {len(model.graph.node)} nodes; "
          f"built and saved in {time.perf_counter() - start:.1f} s to {args.path} (+ .data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
