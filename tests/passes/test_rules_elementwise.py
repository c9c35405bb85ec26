"""Rules for elementwise ops: unary activations pass channels through; broadcasting
ops tie the axes that line up and slice per-channel constants."""
from __future__ import annotations

import numpy as np
import pytest
from test_rules_common import (
    analysis,
    assert_frozen,
    build,
    const_input,
    group_of,
    producer,
    prune_and_check,
)

from onnxprune.passes.rules.elementwise import UNARY

# Conv(8) -> [pre] -> op -> [post] -> Conv(4): the op sits between producer and consumer.
SANDWICH = """
g (float[2,3,6,6] x) => (float[2,4,6,6] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  {body}
  y = Conv(z, w2, b2)
}}
"""
SANDWICH_W = {"w1": (8, 3, 3, 3), "b1": (8,), "w2": (4, 8, 1, 1), "b2": (4,)}

# Ops whose domain is limited get a squashed input (no NaN: zeroed consumer weights
# times NaN would still be NaN, and the exactness check would not mean anything).
SQUASH = "p = Sigmoid(a)"
UNARY_BODY = {
    "Log": (SQUASH, "z = Log(p)"),
    "Sqrt": (SQUASH, "z = Sqrt(p)"),
    "Reciprocal": (SQUASH, "z = Reciprocal(p)"),
    "Asin": (SQUASH, "z = Asin(p)"),
    "Acos": (SQUASH, "z = Acos(p)"),
    "Atanh": (SQUASH, "z = Atanh(p)"),
    "Acosh": (SQUASH + "\n  one = Constant<value = float {1.5}>()\n  q = Add(p, one)", "z = Acosh(q)"),
    "Not": ("zero = Constant<value = float {0.0}>()\n  p = Greater(a, zero)", "n = Not(p)\n  z = Cast<to = 1>(n)"),
    "IsNaN": ("", "n = IsNaN(a)\n  z = Cast<to = 1>(n)"),
    "IsInf": ("", "n = IsInf(a)\n  z = Cast<to = 1>(n)"),
    "Cast": ("", "d = Cast<to = 11>(a)\n  z = Cast<to = 1>(d)"),
    "CastLike": ("like = Constant<value = double {0.0}>()\n  d = CastLike(a, like)", "z = Cast<to = 1>(d)"),
    "Clip": ("lo = Constant<value = float {-0.5}>()\n  hi = Constant<value = float {0.5}>()", "z = Clip(a, lo, hi)"),
    "Dropout": ("", "z, mask = Dropout(a)"),
    "Exp": ("", "z = Exp(a)"),
}
OPSET = {"Gelu": 20, "Mish": 22, "HardSwish": 22, "Swish": 24, "Celu": 17}


@pytest.mark.parametrize("op", UNARY)
def test_unary_passes_channels_through(op):
    pre, body = UNARY_BODY.get(op, ("", f"z = {op}(a)"))
    proto = build(SANDWICH.format(body=f"{pre}\n  {body}"), SANDWICH_W, opset=OPSET.get(op, 17))
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, removed = prune_and_check(proto)
    assert len(removed) == 4
    assert const_input(producer(result.model, "y"), 1).shape == (4, 4, 1, 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("lo = Constant<value = float {0.0}>()\n  z = Clip(a, lo)", id="min"),
        pytest.param(
            "lo = Constant<value = float {-1.0}>()\n  hi = Constant<value = float {6.0}>()\n  z = Clip(a, lo, hi)",
            id="min-max",
        ),
        pytest.param("z = Clip(a, , hi6)", id="max-initializer"),
    ],
)
def test_clip_bounds_do_not_couple(body):
    proto = build(SANDWICH.format(body=body), {**SANDWICH_W, "hi6": np.array(6.0, np.float32)})
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes
    prune_and_check(proto)


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 8, 1, 1), (1,)], ids=["Cx1x1", "1xCx1x1", "scalar"])
def test_prelu_slope(shape):
    proto = build(SANDWICH.format(body="z = PRelu(a, slope)"), {**SANDWICH_W, "slope": shape})
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    want = tuple(4 if s == 8 else s for s in shape)
    assert const_input(producer(result.model, "z"), 1).shape == want


@pytest.mark.parametrize(
    "shape", [(8, 1, 1), (1, 8, 1, 1), (8, 6, 6), (1, 1, 6), ()], ids=["Cx1x1", "1xCx1x1", "CxHxW", "W", "scalar"]
)
@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div", "Max"])
def test_broadcast_constant(op, shape):
    c = np.random.default_rng(3).random(shape).astype(np.float32) + 0.5  # Div: no zeros
    proto = build(SANDWICH.format(body=f"m = {op}(a, c)\n  z = {op}(c, m)"), {**SANDWICH_W, "c": c})
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    want = tuple(4 if s == 8 else s for s in shape)
    assert const_input(producer(result.model, "m"), 1).shape == want
    assert const_input(producer(result.model, "z"), 0).shape == want


def test_squeeze_excite():
    """[N,C,1,1] gate times [N,C,H,W]: the gate's producer joins the stream's group."""
    proto = build(
        """
        g (float[2,3,6,6] x) => (float[2,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
          p = GlobalAveragePool(a)
          s1 = Conv(p, wr, br)
          s2 = Relu(s1)
          s3 = Conv(s2, we, be)
          s4 = Sigmoid(s3)
          z = Mul(a, s4)
          y = Conv(z, w2, b2)
        }
        """,
        {**SANDWICH_W, "wr": (2, 8, 1, 1), "br": (2,), "we": (8, 2, 1, 1), "be": (8,)},
    )
    an = analysis(proto)
    stream, squeeze = group_of(an, "w1"), group_of(an, "wr")
    assert stream is group_of(an, "we") and stream.size == 8 and stream.exact
    assert squeeze is not stream and squeeze.size == 2
    result, _, _ = prune_and_check(proto)
    m = result.model
    assert const_input(producer(m, "s1"), 1).shape == (1, 4, 1, 1)
    assert const_input(producer(m, "s3"), 1).shape == (4, 1, 1, 1)
    assert const_input(producer(m, "s3"), 2).shape == (4,)


def test_residual_add_of_two_convs_is_one_group():
    proto = build(
        """
        g (float[2,3,6,6] x) => (float[2,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
          r = Relu(a)
          b = Conv<pads = [1, 1, 1, 1]>(r, wb, bb)
          z = Add(a, b)
          y = Conv(z, w2, b2)
        }
        """,
        {**SANDWICH_W, "wb": (8, 8, 3, 3), "bb": (8,)},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g is group_of(an, "wb") and g.size == 8 and g.exact
    assert {s["tensor"] for s in g.sources} == {"w1", "wb"}
    result, _, _ = prune_and_check(proto)
    b = producer(result.model, "b")
    assert const_input(b, 1).shape == (4, 4, 3, 3) and const_input(b, 2).shape == (4,)


def test_add_with_graph_input_freezes():
    proto = build(
        """
        g (float[2,3,6,6] x, float[2,8,6,6] skip) => (float[2,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
          z = Add(a, skip)
          y = Conv(z, w2, b2)
        }
        """,
        SANDWICH_W,
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Add", "elementwise operands")


# Exported decompositions of activations: each piece has its own rule.
DECOMPOSED = {
    "swish": "s = Sigmoid(a)\n  z = Mul(a, s)",
    "gelu-erf": (
        "k = Constant<value = float {1.4142135}>()\n  d = Div(a, k)\n  e = Erf(d)\n"
        "  one = Constant<value = float {1.0}>()\n  f = Add(e, one)\n  m = Mul(a, f)\n"
        "  half = Constant<value = float {0.5}>()\n  z = Mul(m, half)"
    ),
    "gelu-tanh": (
        "c3 = Constant<value = float {0.044715}>()\n  three = Constant<value = float {3.0}>()\n"
        "  p3 = Pow(a, three)\n  t1 = Mul(p3, c3)\n  t2 = Add(a, t1)\n"
        "  k = Constant<value = float {0.7978846}>()\n  t3 = Mul(t2, k)\n  t4 = Tanh(t3)\n"
        "  one = Constant<value = float {1.0}>()\n  t5 = Add(t4, one)\n  m = Mul(a, t5)\n"
        "  half = Constant<value = float {0.5}>()\n  z = Mul(m, half)"
    ),
    "hardswish": "h = HardSigmoid<alpha = 0.16666667, beta = 0.5>(a)\n  z = Mul(a, h)",
    "hardswish-clip": (
        "three = Constant<value = float {3.0}>()\n  six = Constant<value = float {6.0}>()\n"
        "  zero = Constant<value = float {0.0}>()\n  s = Add(a, three)\n  c = Clip(s, zero, six)\n"
        "  m = Mul(a, c)\n  z = Div(m, six)"
    ),
    "mish": "sp = Softplus(a)\n  t = Tanh(sp)\n  z = Mul(a, t)",
    "where-leaky": (
        "zero = Constant<value = float {0.0}>()\n  cond = Greater(a, zero)\n"
        "  k = Constant<value = float {0.1}>()\n  neg = Mul(a, k)\n  z = Where(cond, a, neg)"
    ),
}


@pytest.mark.parametrize("name", list(DECOMPOSED))
def test_decomposed_activation(name):
    proto = build(SANDWICH.format(body=DECOMPOSED[name]), SANDWICH_W)
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    prune_and_check(proto)


@pytest.mark.parametrize(
    "shape", [(8, 1, 1), (1, 8, 1, 1), ()], ids=["Cx1x1", "1xCx1x1", "scalar"]
)
def test_where_with_per_channel_constant(shape):
    c = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    body = "zero = Constant<value = float {0.0}>()\n  cond = Greater(a, zero)\n  z = Where(cond, a, c)"
    proto = build(SANDWICH.format(body=body), {**SANDWICH_W, "c": c})
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    want = tuple(4 if s == 8 else s for s in shape)
    assert const_input(producer(result.model, "z"), 2).shape == want


def test_where_with_runtime_condition_from_graph_input_freezes():
    proto = build(
        """
        g (float[2,3,6,6] x, bool[2,8,6,6] cond) => (float[2,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
          zero = Constant<value = float {0.0}>()
          z = Where(cond, a, zero)
          y = Conv(z, w2, b2)
        }
        """,
        SANDWICH_W,
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Where", "elementwise operands")
