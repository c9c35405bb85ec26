"""Data-free statistics from what the model carries: the means of a layer's input read off
the BatchNormalization running statistics before it (the data-free half of SPA's OBSPA,
and the bias correction of Nagel et al. 2019's data-free quantization).

A BatchNormalization in inference mode maps its input, whose running mean and variance
it stores, to per channel mean B and variance scale²·var/(var + ε). Taking each channel
as Gaussian, a Relu after it has the rectified mean μΦ(μ/σ) + σφ(μ/σ). Ops that keep a
channel's mean (Identity, Dropout, GlobalAveragePool, a Flatten of a [N, C, 1…] value)
may follow. A Conv's unfolded column (channel c, kernel position p) then has the mean
of channel c times the fraction of output positions whose tap p falls inside the input
(padding reads zeros).

With channels taken as independent, their covariance is diagonal, and least squares with
a diagonal covariance keeps the kept weights and moves the removed channels' mean into
the bias: bias compensation is the whole closed-form answer these statistics allow
(passes/recovery.py `refit` with no second moment).

Where BatchNorm survives export: TorchScript with do_constant_folding=False or
training=PRESERVE, the dynamo exporter with optimize=False, paddle2onnx, and every model
whose BatchNorm does not follow a conv (pre-activation ResNets, DenseNets). PyTorch's
default exports fold it into the conv, and then nothing is left to read.

What this does not do: second moments (the Gaussian guess is too rough to refit weights
by), other activations than Relu (Clip, Sigmoid, …: the layer is not refit, with why),
or a BatchNorm whose statistics are not constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxprune.passes.constants import const_array, is_const
from onnxprune.passes.conv_geometry import conv_geometry, conv_pads
from onnxprune.passes.recovery import Consumer, Moments

KEEPS_MEAN = ("Identity", "Dropout", "GlobalAveragePool", "Flatten")


def batchnorm_moments(model: ir.Model, consumers: list[Consumer], shapes: Mapping[str, tuple] | None = None,
                      ) -> tuple[dict[str, Moments], dict[str, str]]:
    """The input means of every consumer whose input comes from a BatchNorm (as `Moments`
    with n = 1 and no second moment, by node name), and why not for the others.
    `shapes` (value name -> shape, e.g. the channel analysis's measured shapes) gives a
    Conv input's spatial size where the model does not declare it."""
    values = {v.name: v for n in model.graph for v in n.outputs if v is not None}
    nodes = {n.name: n for n in model.graph}
    found: dict[str, Moments] = {}
    why: dict[str, str] = {}
    for c in consumers:
        value = values.get(c.activation)
        means, reason = channel_means(value, shapes or {}) if value is not None else (None, "its input is a graph input")
        if means is not None and len(means) != len(c.keep):
            means, reason = None, f"its input has {len(c.keep)} channels, the BatchNorm before it {len(means)}"
        if means is None:
            why[c.node] = f"no BatchNorm statistics for its input: {reason}"
            continue
        columns = np.repeat(means, c.kernel)
        if c.op == "Conv":
            shape = (shapes or {}).get(value.name) or (tuple(value.shape) if value.shape is not None else ())
            # (the measured shape first: exporters often leave inner shapes undeclared)
            columns = columns * np.tile(_inside_fraction(nodes[c.node], shape), len(means))
        found[c.node] = Moments(1, columns, None)
    return found, why


def channel_means(value: ir.Value, shapes: Mapping[str, tuple]) -> tuple[np.ndarray | None, str]:
    """Per-channel mean of `value` from the BatchNorm it comes from, or (None, why)."""
    rectified = False
    while True:
        node = value.producer()
        if node is None:
            return None, "it is not computed from a BatchNormalization"
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op == "BatchNormalization":
            break
        if op in KEEPS_MEAN and not rectified:
            if op == "Flatten" and not _flattens_channels(node, shapes):
                return None, "a Flatten mixes its channels with positions"
            value = node.inputs[0]
            continue
        if op == "Relu" and not rectified:
            rectified = True
            value = node.inputs[0]
            continue
        return None, f"{node.name} ({op}) lies between it and a BatchNormalization"
    inputs = list(node.inputs)
    if len(inputs) < 5 or not all(is_const(v) for v in inputs[1:5]):
        return None, f"{node.name}'s statistics are not constants"
    if node.attributes.get_int("training_mode", 0):
        return None, f"{node.name} is in training mode"
    scale, beta, _mean, var = (np.asarray(const_array(v), dtype=np.float64).reshape(-1) for v in inputs[1:5])
    eps = node.attributes.get_float("epsilon", 1e-5)
    std = np.abs(scale) * np.sqrt(np.maximum(var, 0.0) / (np.maximum(var, 0.0) + eps))
    if not rectified:
        return beta, ""
    return _rectified_mean(beta, std), ""


def _rectified_mean(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """E[max(y, 0)] for y ~ N(mu, sigma²) per channel (sigma 0: max(mu, 0))."""
    out = np.maximum(mu, 0.0)
    live = sigma > 0
    t = mu[live] / sigma[live]
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in t]))
    pdf = np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    out[live] = mu[live] * cdf + sigma[live] * pdf
    return out


def _flattens_channels(node: ir.Node, shapes: Mapping[str, tuple]) -> bool:
    """A Flatten whose columns are the channels: axis 1 of a value [N, C, 1, …]."""
    value = node.inputs[0]
    shape = shapes.get(value.name) or value.shape
    if node.attributes.get_int("axis", 1) != 1 or shape is None or len(shape) < 2:
        return False
    return all(isinstance(d, int) and d == 1 for d in list(shape)[2:])


def _inside_fraction(node: ir.Node, shape: tuple) -> np.ndarray:
    """Per kernel position of a Conv, the fraction of its output positions whose tap reads
    inside its input of `shape` (1 where the spatial size is unknown)."""
    w = const_array(node.inputs[1])
    kernel = list(w.shape[2:])
    size = list(shape)[2:] if len(shape) == 2 + len(kernel) else []
    if not size or not all(isinstance(d, int) for d in size):
        return np.ones(int(np.prod(kernel)))
    spatial = len(kernel)
    strides, dilations = conv_geometry(node, kernel)
    pads = conv_pads(node, size, kernel, strides, dilations)
    fractions = []
    for i, (n, k, s, d) in enumerate(zip(size, kernel, strides, dilations)):
        out = (n + pads[i] + pads[i + spatial] - d * (k - 1) - 1) // s + 1
        at = np.arange(out)[:, None] * s - pads[i] + np.arange(k)[None, :] * d  # [out, k] input index
        fractions.append(((at >= 0) & (at < n)).mean(axis=0))
    total = fractions[0]
    for f in fractions[1:]:
        total = np.multiply.outer(total, f)
    return np.asarray(total).reshape(-1)
