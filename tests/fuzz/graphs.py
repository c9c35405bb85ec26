"""A Hypothesis strategy of small, valid float32 ONNX models (onnx.helper + NumPy only).

`random_models()` draws a `GeneratedModel`: the `onnx.ModelProto` plus what it was made
of (opset, batch, node count, the macro steps taken). Every model is built so that it
passes `onnx.checker.check_model(full_check=True)` and runs in ONNX Runtime: shapes
are tracked exactly while building (the declared outputs carry them), and an op is only
offered where its shape rules hold. `validate()` checks both, and the strategy filters
on it as a last resort (the generator test in test_fuzz.py asserts it never has to).

What goes in (mixed at random, 3-25 nodes):
  Conv (plain, grouped, depthwise; bias or not; pads, strides, dilation), BatchNorm,
  Relu/Sigmoid/HardSwish/Tanh, Add/Mul of two activations (residual adds, SE-style
  broadcast Mul), Concat/Split/Slice along channels, Flatten or Reshape into Gemm or
  MatMul, Reshape+Transpose to tokens, Transpose, MatMul/Gemm with constant weights
  (initializers or Constant nodes), LayerNormalization, GroupNormalization (opset 18),
  InstanceNormalization, MaxPool/AveragePool/GlobalAveragePool, Resize (nearest, by
  scales), Pad (constant), Gather on a constant index along a non-channel axis,
  ReduceMean.

Tensors are tracked as `T(name, dims)` where `dims` leaves out the batch axis (always
axis 0, declared 1 or 'N'): rank 4 is (C, H, W), rank 3 is (S, F) tokens, rank 2 is
(F,). The "channel" axis is 1 for rank 4 and 2, the last axis for rank 3.

Design for shrinking: the number of steps, the op choices (simplest first) and one
weight seed are the only draws that matter, so Hypothesis shrinks towards short chains
of simple ops with seed 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import onnx.shape_inference
from checks import _without_groupnorm, check_model, declared_shape, feeds, run, validate
from hypothesis import assume
from hypothesis import strategies as st

__all__ = ["GeneratedModel", "check_model", "declared_shape", "describe", "feeds", "random_models", "run",
           "validate"]

FLOAT = onnx.TensorProto.FLOAT
MAX_CH = 64  # channels / features of any tensor
MAX_HW = 32  # spatial size
MAX_FLAT = 4096  # features after a Flatten
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class T:
    name: str
    dims: tuple[int, ...]  # without the batch axis

    @property
    def rank(self) -> int:
        return len(self.dims) + 1

    @property
    def ch_axis(self) -> int:
        return 2 if self.rank == 3 else 1

    @property
    def ch(self) -> int:
        return self.dims[self.ch_axis - 1]

    def with_ch(self, name: str, c: int) -> T:
        d = list(self.dims)
        d[self.ch_axis - 1] = c
        return T(name, tuple(d))


@dataclass
class GeneratedModel:
    model: onnx.ModelProto
    opset: int
    ir_version: int
    batch: object  # 1 or "N"
    steps: list[str] = field(default_factory=list)

    @property
    def n_nodes(self) -> int:
        return len(self.model.graph.node)

    def __repr__(self) -> str:  # what Hypothesis prints for a falsifying example
        return (
            f"GeneratedModel(opset={self.opset}, ir={self.ir_version}, batch={self.batch!r}, "
            f"nodes={self.n_nodes}, steps={self.steps})\n{describe(self.model)}"
        )


def describe(model: onnx.ModelProto) -> str:
    """One line per node: outputs = Op(inputs) {attrs}; inputs and outputs with shapes."""
    g = model.graph
    inits = {i.name: tuple(i.dims) for i in g.initializer}

    def sig(v):
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
        return f"{v.name}{dims}"

    lines = [f"  inputs: {', '.join(sig(v) for v in g.input)}  outputs: {', '.join(sig(v) for v in g.output)}"]
    for n in g.node:
        attrs = {a.name: oh.get_attribute_value(a) for a in n.attribute if a.name != "value"}
        args = ", ".join(f"{i}{list(inits[i])}" if i in inits else (i or "''") for i in n.input)
        lines.append(f"  {', '.join(n.output)} = {n.op_type}({args}) {attrs if attrs else ''}".rstrip())
    return "\n".join(lines)


class _Builder:
    def __init__(self, draw, opset: int, batch, seed: int, named: bool, const_nodes: bool, share: bool = False):
        self.draw = draw
        self.opset = opset
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.named = named
        self.const_nodes = const_nodes
        self.share = share  # reuse an existing weight/bias of the same shape (exporters dedupe)
        self.by_shape: dict[tuple, list[str]] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[T] = []
        self.pool: list[T] = []  # every activation produced so far (graph inputs too)
        self.counter = 0
        self.steps: list[str] = []

    # -- naming and emission ---------------------------------------------------------
    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        name = f"/{op}_{self.counter}" if self.named else ""
        self.nodes.append(oh.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def const(self, stem: str, array: np.ndarray, as_node: bool = False) -> str:
        name = self.fresh(stem)
        tensor = onh.from_array(np.asarray(array), name)
        if as_node:
            self.nodes.append(oh.make_node("Constant", [], [name], value=tensor, name=f"/Constant_{self.counter}" if self.named else ""))
        else:
            self.inits.append(tensor)
        return name

    def shared(self, stem: str, shape: tuple) -> str | None:
        """An existing initializer of this kind and shape to read again, sometimes."""
        names = self.by_shape.get((stem, tuple(shape)))
        if self.share and names and self.flag(2):
            return self.pick(names)
        return None

    def weight(self, stem: str, shape: tuple[int, ...], fan_in: int, as_node: bool = False) -> str:
        if not as_node and (name := self.shared(stem, shape)):
            return name
        w = self.rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
        name = self.const(stem, w.astype(np.float32), as_node)
        if not as_node:
            self.by_shape.setdefault((stem, tuple(shape)), []).append(name)
        return name

    def vec(self, stem: str, n: int, lo: float = -0.5, hi: float = 0.5) -> str:
        if name := self.shared(stem, (n,)):
            return name
        name = self.const(stem, self.rng.uniform(lo, hi, n).astype(np.float32))
        self.by_shape.setdefault((stem, (n,)), []).append(name)
        return name

    def ints(self, stem: str, values) -> str:
        return self.const(stem, np.asarray(values, dtype=np.int64))

    def axis(self, axis: int, rank: int) -> int:
        """`axis`, sometimes written negatively (exporters do both)."""
        return axis - rank if self.flag(4) else axis

    def produce(self, t: T) -> T:
        self.pool.append(t)
        return t

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def flag(self, p_true_one_in: int = 2) -> bool:
        """True with probability about 1/p_true_one_in; shrinks to False."""
        return self.draw(st.integers(0, p_true_one_in - 1)) == p_true_one_in - 1

    # -- ops ---------------------------------------------------------------------------
    def unary(self, t: T) -> T:
        op = self.pick(["Relu", "Sigmoid", "Tanh", "HardSwish"])
        return self.produce(T(self.node(op, [t.name])[0], t.dims))

    def conv(self, t: T, co: int | None = None, k: int | None = None, group: int | None = None,
             same: bool = False) -> T:
        """Conv; `same` keeps the spatial size (stride 1, no dilation, symmetric k//2 pads)."""
        c, h, w = t.dims
        if group is None:
            kind = self.pick(["plain", "grouped", "depthwise"])
            divisors = [g for g in range(2, c) if c % g == 0]
            if kind == "grouped" and divisors:
                group = self.pick(divisors)
                co = group * self.integer(1, max(1, 16 // group))
            elif kind == "depthwise":
                group = c
                co = c * self.pick([1, 2]) if c * 2 <= MAX_CH else c
            else:
                group = 1
        if co is None:
            co = self.integer(2, 16)
        ks = [k] if k else [kk for kk in (1, 3, 5) if kk <= 3 or min(h, w) >= 8]
        k = self.pick(ks)
        stride = self.pick([1, 2]) if min(h, w) >= 4 and not same else 1
        dil = self.pick([1, 2]) if k == 3 and min(h, w) >= 8 and not same and self.flag(4) else 1
        if k == 1:
            pads = [0, 0, 0, 0]
        elif same:
            pads = [k // 2] * 4
        elif self.flag(4):  # asymmetric
            pads = [self.integer(0, k // 2 * dil) for _ in range(4)]
        else:
            p = self.pick([k // 2 * dil, 0])
            pads = [p, p, p, p]
        ho = (h + pads[0] + pads[2] - dil * (k - 1) - 1) // stride + 1
        wo = (w + pads[1] + pads[3] - dil * (k - 1) - 1) // stride + 1
        if ho < 1 or wo < 1:  # kernel too big for this map: fall back to a 1x1
            k, dil, pads, stride, ho, wo = 1, 1, [0, 0, 0, 0], 1, h, w
        wname = self.weight("conv.weight", (co, c // group, k, k), fan_in=c // group * k * k)
        inputs = [t.name, wname]
        if not self.flag(3):
            inputs.append(self.vec("conv.bias", co))
        attrs = {"kernel_shape": [k, k], "pads": pads, "strides": [stride, stride]}
        if stride == 1 and dil == 1 and k > 1 and pads == [k // 2] * 4 and self.flag(5):
            del attrs["pads"]
            attrs["auto_pad"] = self.pick(["SAME_UPPER", "SAME_LOWER"])
        if self.flag(5):
            del attrs["kernel_shape"]  # taken from the weight
        if group != 1:
            attrs["group"] = group
        if dil != 1:
            attrs["dilations"] = [dil, dil]
        return self.produce(T(self.node("Conv", inputs, **attrs)[0], (co, ho, wo)))

    def affine(self, t: T) -> T:
        """Add or Mul by a constant: per channel ([C,1,1] / [1,C,1,1] / [F]) or a scalar."""
        op = self.pick(["Mul", "Add"])
        c = t.ch
        kind = self.pick(["channel", "scalar", "channel4"] if t.rank == 4 else ["channel", "scalar"])
        if kind == "scalar":
            value = np.array(self.rng.uniform(0.5, 1.5), np.float32)
        elif t.rank == 4:
            value = self.rng.uniform(0.5, 1.5, (c, 1, 1) if kind == "channel" else (1, c, 1, 1)).astype(np.float32)
        else:
            value = self.rng.uniform(0.5, 1.5, (c,)).astype(np.float32)
        name = self.const(f"{op.lower()}.const", value)
        return self.produce(T(self.node(op, [t.name, name])[0], t.dims))

    def batchnorm(self, t: T) -> T:
        c = t.ch
        ins = [t.name, self.vec("bn.weight", c, 0.5, 1.5), self.vec("bn.bias", c),
               self.vec("bn.running_mean", c), self.vec("bn.running_var", c, 0.5, 1.5)]
        return self.produce(T(self.node("BatchNormalization", ins, epsilon=1e-5)[0], t.dims))

    def instnorm(self, t: T) -> T:
        c = t.ch
        ins = [t.name, self.vec("in.weight", c, 0.5, 1.5), self.vec("in.bias", c)]
        return self.produce(T(self.node("InstanceNormalization", ins)[0], t.dims))

    def groupnorm(self, t: T) -> T:  # opset 18: scale and bias have num_groups entries
        c = t.ch
        g = self.pick([d for d in range(1, c + 1) if c % d == 0])
        ins = [t.name, self.vec("gn.weight", g, 0.5, 1.5), self.vec("gn.bias", g)]
        return self.produce(T(self.node("GroupNormalization", ins, num_groups=g)[0], t.dims))

    def layernorm(self, t: T) -> T:
        axes = [-1, t.rank - 1] + ([1, -2] if t.rank == 4 else [])
        axis = self.pick(axes)
        norm_shape = t.dims[axis:] if axis < 0 else t.dims[axis - 1:]
        scale = self.const("ln.weight", self.rng.uniform(0.5, 1.5, norm_shape).astype(np.float32))
        ins = [t.name, scale]
        if not self.flag(4):
            ins.append(self.const("ln.bias", self.rng.uniform(-0.5, 0.5, norm_shape).astype(np.float32)))
        return self.produce(T(self.node("LayerNormalization", ins, axis=axis, epsilon=1e-5)[0], t.dims))

    def pool2d(self, t: T) -> T:
        c, h, w = t.dims
        op = self.pick(["MaxPool", "AveragePool"])
        k = self.pick([kk for kk in (2, 3) if kk <= min(h, w)])
        stride = self.pick([1, 2])
        p = self.pick([0, 1]) if k == 3 else 0
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [p, p, p, p]}
        if op == "AveragePool" and p and self.flag(2):
            attrs["count_include_pad"] = 1
        ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
        return self.produce(T(self.node(op, [t.name], **attrs)[0], (c, ho, wo)))

    def gap(self, t: T) -> T:
        return self.produce(T(self.node("GlobalAveragePool", [t.name])[0], (t.ch, 1, 1)))

    def resize(self, t: T) -> T:
        c, h, w = t.dims
        options = []
        if 2 * max(h, w) <= MAX_HW:
            options.append((2.0, 2.0))
        if min(h, w) >= 4:
            options.append((0.5, 0.5))
        if 2 * h <= MAX_HW:
            options.append((2.0, 1.0))
        sh, sw = self.pick(options)
        scales = self.const("resize.scales", np.array([1, 1, sh, sw], np.float32))
        out = self.node("Resize", [t.name, "", scales], mode="nearest")[0]
        return self.produce(T(out, (c, int(np.floor(h * sh)), int(np.floor(w * sw)))))

    def pad(self, t: T) -> T:
        c, h, w = t.dims
        room_h, room_w = max(0, min(2, (MAX_HW - h) // 2)), max(0, min(2, (MAX_HW - w) // 2))
        top, bottom = self.integer(0, room_h), self.integer(0, room_h)
        left, right = self.integer(0, room_w), self.integer(0, room_w)
        if top + left + bottom + right == 0:
            if h < MAX_HW:
                bottom = 1
            else:
                right = 1
        c0 = c1 = 0
        if self.flag(6) and c + 2 <= MAX_CH:  # padding along channels too
            c0, c1 = self.integer(0, 1), 1
        with_axes = self.opset >= 18 and c0 + c1 == 0 and self.flag(3)
        if with_axes:
            pads = self.ints("pad.pads", [top, left, bottom, right])
        else:
            pads = self.ints("pad.pads", [0, c0, top, left, 0, c1, bottom, right])
        ins = [t.name, pads]
        if self.flag(2) or with_axes:
            ins.append(self.const("pad.value", np.array(self.pick([0.0, 0.5]), np.float32)) if self.flag(2) else "")
        if with_axes:
            ins.append(self.ints("pad.axes", self.pick([[2, 3], [-2, -1]])))
        out = self.node("Pad", ins, mode="constant")[0]
        return self.produce(T(out, (c + c0 + c1, h + top + bottom, w + left + right)))

    def gather(self, t: T) -> T:
        axis = self.pick([2, 3]) if t.rank == 4 else 1  # never the channel axis
        dim = t.dims[axis - 1]
        if t.rank == 3 and self.flag(3):  # a scalar index drops the sequence axis: [B, F]
            idx = self.integer(-dim, dim - 1)
            out = self.node("Gather", [t.name, self.ints("gather.index", idx)], axis=1)[0]
            return self.produce(T(out, (t.dims[1],)))
        n = self.integer(1, min(dim, 4))
        idx = [self.integer(-dim, dim - 1) for _ in range(n)]
        out = self.node("Gather", [t.name, self.ints("gather.indices", idx)], axis=self.axis(axis, t.rank))[0]
        d = list(t.dims)
        d[axis - 1] = n
        return self.produce(T(out, tuple(d)))

    def reducemean(self, t: T) -> T:
        if t.rank == 4:
            kind = self.pick(["spatial_keep", "spatial_drop", "channel_keep"])
            axes, keep = {"spatial_keep": ([2, 3], 1), "spatial_drop": ([2, 3], 0), "channel_keep": ([1], 1)}[kind]
            dims = {"spatial_keep": (t.ch, 1, 1), "spatial_drop": (t.ch,), "channel_keep": (1, *t.dims[1:])}[kind]
        else:  # tokens: mean over the sequence -> [B, F]
            axes, keep, dims = [1], 0, (t.dims[1],)
        axes = [self.axis(a, t.rank) for a in axes]
        if self.opset >= 18:
            out = self.node("ReduceMean", [t.name, self.ints("reduce.axes", axes)], keepdims=keep)[0]
        else:
            out = self.node("ReduceMean", [t.name], axes=axes, keepdims=keep)[0]
        return self.produce(T(out, dims))

    def slice_ch(self, t: T) -> T:
        c, ax = t.ch, t.ch_axis
        step = 1
        if self.flag(6):
            step = self.pick([2, -1])
        while True:
            if step > 0:
                start = self.integer(0, c - 1)
                end = self.pick([self.integer(start + 1, c), INT64_MAX, -1 if start < c - 1 else c])
                if self.flag(4):
                    start -= c  # negative start, same position
            else:
                start = self.pick([c - 1, -1, INT64_MAX])
                end = self.pick([-(c + 1), 0, -INT64_MAX])
            n = len(range(c)[start:end:step])  # Python's clamping is ONNX's
            if n >= 1:
                break
            step = 1
        ins = [t.name, self.ints("slice.starts", [start]), self.ints("slice.ends", [end]),
               self.ints("slice.axes", [self.axis(ax, t.rank)])]
        if step != 1 or self.flag(3):
            ins.append(self.ints("slice.steps", [step]))
        return self.produce(t.with_ch(self.node("Slice", ins)[0], n))

    def split_ch(self, t: T) -> T:
        c = t.ch
        if c >= 3 and self.flag(3):
            a = self.integer(1, c - 2)
            b = self.integer(1, c - 1 - a)
            sizes = [a, b, c - a - b]
        else:
            a = self.integer(1, c - 1)
            sizes = [a, c - a]
        if self.opset >= 18 and self.flag(3):  # num_outputs: equal pieces, the last one smaller
            n = self.integer(2, min(c, 3))
            size = -(-c // n)
            sizes = [size] * (c // size) + ([c % size] if c % size else [])
            outs = self.node("Split", [t.name], n_out=len(sizes), axis=self.axis(t.ch_axis, t.rank),
                             num_outputs=len(sizes))
        else:
            outs = self.node("Split", [t.name, self.ints("split.sizes", sizes)], n_out=len(sizes),
                             axis=self.axis(t.ch_axis, t.rank))
        pieces = [self.produce(t.with_ch(o, s)) for o, s in zip(outs, sizes)]
        return pieces[self.integer(0, len(pieces) - 1)]

    def concat_ch(self, t: T) -> T:
        same = [p for p in self.pool if p.rank == t.rank and p.name != t.name
                and all(a == b for i, (a, b) in enumerate(zip(p.dims, t.dims)) if i != t.ch_axis - 1)
                and p.ch + t.ch <= MAX_CH]
        other = self.pick(same) if same and not self.flag(4) else t
        order = [t.name, other.name] if not self.flag(3) else [other.name, t.name]
        out = self.node("Concat", order, axis=self.axis(t.ch_axis, t.rank))[0]
        return self.produce(t.with_ch(out, t.ch + other.ch))

    def binary(self, t: T) -> T:
        same = [p for p in self.pool if p.dims == t.dims and p.rank == t.rank and p.name != t.name]
        op = self.pick(["Add", "Mul"])
        other = self.pick(same)
        order = [t.name, other.name] if not self.flag(3) else [other.name, t.name]
        return self.produce(T(self.node(op, order)[0], t.dims))

    def residual(self, t: T) -> T:
        """Add(x, f(x)) with f a short branch that keeps x's shape."""
        if t.rank == 4:
            b = self.conv(t, co=t.ch, k=self.pick([3, 1]), group=1, same=True)
            if self.flag(2):
                b = self.batchnorm(b)
            if self.flag(2):
                b = self.unary(b)
        else:
            f = t.ch
            b = self.produce(T(self.node("MatMul", [t.name, self.weight("fc.weight", (f, f), f)])[0], t.dims))
            if self.flag(2):
                b = self.unary(b)
        order = [t.name, b.name] if not self.flag(3) else [b.name, t.name]
        return self.produce(T(self.node("Add", order)[0], t.dims))

    def se(self, t: T) -> T:
        """Squeeze-excite: x * Sigmoid(Conv(Relu(Conv(GAP(x))))) (broadcast Mul)."""
        c = t.ch
        r = max(1, c // self.pick([2, 4]))
        g = self.gap(t)
        s = self.conv(g, co=r, k=1, group=1)
        s = self.produce(T(self.node("Relu", [s.name])[0], s.dims))
        s = self.conv(s, co=c, k=1, group=1)
        s = self.produce(T(self.node("Sigmoid", [s.name])[0], s.dims))
        return self.produce(T(self.node("Mul", [t.name, s.name])[0], t.dims))

    def transpose4(self, t: T) -> T:
        perm = self.pick([[0, 1, 3, 2], [0, 2, 1, 3], [0, 2, 3, 1], [0, 3, 1, 2], [0, 3, 2, 1]])
        full = (None, *t.dims)
        return self.produce(T(self.node("Transpose", [t.name], perm=perm)[0], tuple(full[p] for p in perm[1:])))

    def transpose3(self, t: T) -> T:
        s, f = t.dims
        return self.produce(T(self.node("Transpose", [t.name], perm=[0, 2, 1])[0], (f, s)))

    def to_tokens(self, t: T) -> T:
        c, h, w = t.dims
        shape = self.ints("tokens.shape", [0, c, self.pick([h * w, -1])])
        r = self.produce(T(self.node("Reshape", [t.name, shape])[0], (c, h * w)))
        return self.transpose3(r)

    def flatten(self, t: T) -> T:
        c, h, w = t.dims
        k = c * h * w
        how = self.pick(["Flatten", "Reshape0", "ReshapeMinus1"] + (["Reshape1"] if self.batch == 1 else []))
        if how == "Flatten":
            out = self.node("Flatten", [t.name], axis=1)[0]
        else:
            target = {"Reshape0": [0, -1], "ReshapeMinus1": [-1, k], "Reshape1": [1, k]}[how]
            out = self.node("Reshape", [t.name, self.ints("flatten.shape", target)])[0]
        return self.produce(T(out, (k,)))

    def dense(self, t: T) -> T:
        """Gemm (2-D only) or MatMul with a constant weight, features -> F."""
        k = t.ch
        f = self.integer(2, 16)
        as_node = self.const_nodes and self.flag(2)
        if t.rank == 2 and self.flag(2):
            trans_b = self.pick([1, 0])
            wshape = (f, k) if trans_b else (k, f)
            ins = [t.name, self.weight("fc.weight", wshape, k, as_node)]
            if not self.flag(4):
                if self.flag(4):
                    ins.append(self.const("fc.bias", self.rng.uniform(-0.5, 0.5, (1, f)).astype(np.float32)))
                else:
                    ins.append(self.vec("fc.bias", f))
            attrs = {"transB": trans_b} if trans_b or self.flag(2) else {}
            if self.flag(5):
                attrs.update(alpha=0.5, beta=2.0)
            out = self.node("Gemm", ins, **attrs)[0]
        else:
            out = self.node("MatMul", [t.name, self.weight("fc.weight", (k, f), k, as_node)])[0]
            if self.flag(2):
                out = self.node("Add", [out, self.vec("fc.bias", f)])[0]
        return self.produce(t.with_ch(out, f))

    def flatten_dense(self, t: T) -> T:
        return self.dense(self.flatten(t))

    # -- the menu ----------------------------------------------------------------------
    def menu(self, t: T, budget: int) -> list[tuple[str, int]]:
        """(macro, most nodes it emits) applicable to head `t` within `budget` nodes."""
        has_same = any(p.dims == t.dims and p.rank == t.rank and p.name != t.name for p in self.pool)
        dense_cost = 3 if self.const_nodes else 2
        out: list[tuple[str, int]] = [("unary", 1)]
        if t.rank == 4:
            c, h, w = t.dims
            out += [("conv", 1), ("bn", 1), ("affine", 1)]
            if has_same:
                out.append(("binary", 1))
            out += [("residual", 4), ("concat", 1)]
            if c >= 2:
                out += [("slice", 1), ("split", 1)]
            out += [("se", 7), ("gap", 1), ("instnorm", 1), ("layernorm", 1), ("transpose", 1), ("reducemean", 1)]
            if min(h, w) >= 2:
                out.append(("pool", 1))
            if min(h, w) >= 4 or 2 * h <= MAX_HW:
                out.append(("resize", 1))
            if h < MAX_HW or w < MAX_HW:
                out.append(("pad", 1))
            if max(h, w) >= 2:
                out.append(("gather", 1))
            if self.opset >= 18:
                out.append(("groupnorm", 1))
            if c * h * w <= MAX_FLAT:
                out.append(("flatten_dense", 1 + dense_cost))
            if h * w <= 256:
                out.append(("tokens", 2))
        else:
            out += [("dense", dense_cost), ("layernorm", 1), ("affine", 1)]
            if t.rank == 2:
                out.append(("bn", 1))
            if has_same:
                out.append(("binary", 1))
            out += [("residual", 3), ("concat", 1)]
            if t.ch >= 2:
                out += [("slice", 1), ("split", 1)]
            if t.rank == 3:
                out += [("transpose", 1), ("reducemean", 1), ("gather", 1)]
        if t.ch + t.ch > MAX_CH:
            out = [m for m in out if m[0] != "concat"]
        return [m for m in out if m[1] <= budget] or [("unary", 1)]

    def apply(self, macro: str, t: T) -> T:
        table = {
            "unary": self.unary, "conv": self.conv, "bn": self.batchnorm, "binary": self.binary,
            "residual": self.residual, "concat": self.concat_ch, "slice": self.slice_ch, "split": self.split_ch,
            "se": self.se, "gap": self.gap, "instnorm": self.instnorm, "layernorm": self.layernorm,
            "groupnorm": self.groupnorm, "pool": self.pool2d, "resize": self.resize, "pad": self.pad,
            "gather": self.gather, "reducemean": self.reducemean, "flatten_dense": self.flatten_dense,
            "tokens": self.to_tokens, "dense": self.dense, "affine": self.affine,
            "transpose": self.transpose4 if t.rank == 4 else self.transpose3,
        }
        self.steps.append(macro)
        return table[macro](t)


_FAVOURED = frozenset({"conv", "residual", "flatten_dense", "dense", "se", "concat", "split"})


def _value_info(name: str, batch, dims) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, FLOAT, [batch, *dims])


@st.composite
def random_models(draw, min_nodes: int = 3, max_nodes: int = 25, check: bool = True) -> GeneratedModel:
    """A small valid float32 ONNX model; see the module docstring. `check=False` skips
    the validation filter (for testing the generator itself)."""
    opset = draw(st.sampled_from([17, 18]))
    ir_version = draw(st.sampled_from([8, 9]))
    batch = draw(st.sampled_from([1, "N", "batch_size", None]))  # None: an unnamed dynamic dim
    seed = draw(st.integers(0, 2**16))
    named = draw(st.integers(0, 4)) != 4
    const_nodes = draw(st.integers(0, 5)) == 5
    share = draw(st.integers(0, 3)) == 3
    b = _Builder(draw, opset, batch, seed, named, const_nodes, share)

    c = draw(st.integers(2, 16))
    hw = draw(st.integers(4, 16))
    x = T("input", (c, hw, hw))
    b.inputs.append(x)
    b.pool.append(x)
    head = x
    target = draw(st.integers(min_nodes, max_nodes))
    if draw(st.integers(0, 3)) == 3:  # a second input, merged into the first at once
        how = draw(st.sampled_from(["add", "mul", "concat"]))
        c2 = c if how != "concat" else draw(st.integers(2, 16))
        x2 = T("input2", (c2, hw, hw))
        b.inputs.append(x2)
        b.pool.append(x2)
        if how == "concat":
            head = b.produce(T(b.node("Concat", [x.name, x2.name], axis=1)[0], (c + c2, hw, hw)))
        else:
            head = b.produce(T(b.node("Add" if how == "add" else "Mul", [x.name, x2.name])[0], x.dims))
        b.steps.append(f"input2-{how}")
    # Weight-bearing ops are what pruning works on: start with one mostly, favour them
    # while building, and often end with a consumer so the groups before it are not
    # all frozen by the graph output.
    if draw(st.integers(0, 3)) != 0 and len(b.nodes) < target:
        head = b.apply("conv", head)
    while len(b.nodes) < target:
        menu = b.menu(head, max_nodes - len(b.nodes))
        names = [m for m, _ in menu]
        weighted = names + [m for m in names if m in _FAVOURED] * 2
        macro = draw(st.sampled_from(weighted))
        head = b.apply(macro, head)
    if len(b.nodes) < max_nodes - 3 and draw(st.booleans()):
        head = b.apply("conv" if head.rank == 4 else "dense", head)

    outputs = [head]
    inputs = {v.name for v in b.inputs}
    others = [p for p in b.pool if p.name != head.name and p.name not in inputs]
    if others and draw(st.integers(0, 2)) == 2:  # a second output, usually also read by a node
        outputs.append(draw(st.sampled_from(others)))
        if draw(st.booleans()):
            outputs.reverse()
    graph = oh.make_graph(
        b.nodes, "fuzz",
        [_value_info(v.name, batch, v.dims) for v in b.inputs],
        [_value_info(v.name, batch, v.dims) for v in outputs],
        b.inits,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], producer_name="onnxprune-fuzz")
    model.ir_version = ir_version
    if draw(st.integers(0, 2)) == 2:  # value_info for intermediates, as exporters write it
        inferred = onnx.shape_inference.infer_shapes(_without_groupnorm(model), strict_mode=True, data_prop=True)
        model.graph.value_info.extend(inferred.graph.value_info)
    if draw(st.integers(0, 7)) == 7:  # initializers also listed as graph inputs (overridable)
        for init in list(model.graph.initializer)[: draw(st.integers(1, 3))]:
            model.graph.input.append(oh.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    gm = GeneratedModel(model=model, opset=opset, ir_version=ir_version, batch=batch, steps=b.steps)
    if check:
        assume(validate(model) is None)  # never expected: test_fuzz.test_generator_makes_valid_models asserts it
    return gm
