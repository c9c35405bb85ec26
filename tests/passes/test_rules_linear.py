"""Rules for ops that create features from a weight: Conv, ConvTranspose, Gemm, MatMul."""
from __future__ import annotations

import numpy as np
import pytest
from test_rules_common import (
    analysis,
    assert_frozen,
    attr,
    build,
    const_input,
    group_of,
    inexact_reasons,
    producer,
    prune_and_check,
)

from onnxprune.model_io import load_model

# -- Conv ------------------------------------------------------------------------------

CONV3 = """
g (float[1,3,8,8] x) => (float[1,4,8,8] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  r = Relu(a)
  h = Conv<pads = [1, 1, 1, 1], group = {group}>(r, w2, b2)
  s = Relu(h)
  y = Conv(s, w3, b3)
}}
"""


def _conv3(c1: int, c2: int, group: int):
    weights = {
        "w1": (c1, 3, 3, 3), "b1": (c1,),
        "w2": (c2, c1 // group, 3, 3), "b2": (c2,),
        "w3": (4, c2, 1, 1), "b3": (4,),
    }
    return build(CONV3.format(group=group), weights)


def test_conv_group1_two_independent_groups():
    proto = _conv3(8, 6, 1)
    an = analysis(proto)
    g1, g2 = group_of(an, "w1"), group_of(an, "w2")
    assert g1 is not g2
    assert (g1.size, g2.size) == (8, 6)
    assert g1.prunable == g1.classes and g2.prunable == g2.classes
    assert g1.exact and g2.exact
    result, _, removed = prune_and_check(proto)
    assert len(removed) == 4 + 3
    m = result.model
    assert const_input(producer(m, "a"), 1).shape == (4, 3, 3, 3)
    assert const_input(producer(m, "a"), 2).shape == (4,)
    assert const_input(producer(m, "h"), 1).shape == (3, 4, 3, 3)
    assert const_input(producer(m, "y"), 1).shape == (4, 3, 1, 1)
    assert attr(producer(m, "h"), "group", 1) == 1


@pytest.mark.parametrize(
    "c1,c2,group,size,kept_w2",
    [
        pytest.param(8, 8, 4, 4, (4, 2, 3, 3), id="grouped-2in-2out"),
        pytest.param(8, 16, 4, 4, (8, 2, 3, 3), id="grouped-2in-4out"),
        pytest.param(8, 8, 8, 8, (4, 1, 3, 3), id="depthwise-x1"),
        pytest.param(8, 16, 8, 8, (8, 1, 3, 3), id="depthwise-x2"),
    ],
)
def test_grouped_conv_prunes_whole_groups(c1, c2, group, size, kept_w2):
    proto = _conv3(c1, c2, group)
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g is group_of(an, "w2"), "a grouped conv's input and output are one group"
    assert g.size == size and len(g.prunable) == size and g.exact
    result, _, removed = prune_and_check(proto)
    assert len(removed) == size // 2
    h = producer(result.model, "h")
    assert attr(h, "group") == group // 2
    assert const_input(h, 1).shape == kept_w2
    assert const_input(h, 2).shape == (kept_w2[0],)
    assert const_input(producer(result.model, "a"), 1).shape == (c1 // 2, 3, 3, 3)
    assert const_input(producer(result.model, "y"), 1).shape == (4, kept_w2[0], 1, 1)


def test_grouped_conv_on_graph_input_freezes_its_groups():
    proto = build(
        """
        g (float[1,4,8,8] x) => (float[1,2,8,8] y) {
          h = Conv<group = 2>(x, w1)
          y = Conv(h, w2)
        }
        """,
        {"w1": (6, 2, 1, 1), "w2": (2, 6, 1, 1)},
    )
    g = group_of(analysis(proto), "w1")
    assert_frozen(g, "Conv", "group 0 reads channels that cannot be pruned")


def test_conv_with_runtime_weight_freezes_input_channels():
    proto = build(
        """
        g (float[1,3,8,8] x, float[5,4,1,1] wx) => (float[1,5,8,8] y) {
          h = Conv(x, w1)
          y = Conv(h, wx)
        }
        """,
        {"w1": (4, 3, 1, 1)},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Conv", "weight is not a constant")


# -- ConvTranspose ---------------------------------------------------------------------

CONVT = """
g (float[1,3,6,6] x) => (float[1,4,12,12] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  r = Relu(a)
  h = ConvTranspose<strides = [2, 2], kernel_shape = [2, 2], group = {group}>(r, w2, b2)
  s = Relu(h)
  y = Conv(s, w3)
}}
"""


@pytest.mark.parametrize(
    "group,cin,cout_g",
    [pytest.param(1, 8, 6, id="group1"), pytest.param(2, 8, 3, id="group2"), pytest.param(4, 8, 2, id="group4")],
)
def test_conv_transpose(group, cin, cout_g):
    cout = group * cout_g
    proto = build(
        CONVT.format(group=group),
        {"w1": (cin, 3, 3, 3), "b1": (cin,), "w2": (cin, cout_g, 2, 2), "b2": (cout,), "w3": (4, cout, 1, 1)},
    )
    an = analysis(proto)
    g1, g2 = group_of(an, "w1"), group_of(an, "w2")
    if group == 1:
        assert g1 is not g2 and (g1.size, g2.size) == (cin, cout)
    else:
        assert g1 is g2 and g1.size == group
    assert all(g.prunable == g.classes and g.exact for g in (g1, g2))
    result, _, _ = prune_and_check(proto)
    h = producer(result.model, "h")
    if group == 1:
        assert const_input(h, 1).shape == (cin // 2, cout_g // 2, 2, 2)
        assert const_input(h, 2).shape == (cout // 2,)
        assert attr(h, "group", 1) == 1
    else:
        # Whole groups: the per-group width of the weight's axis 1 never changes.
        assert const_input(h, 1).shape == (cin // 2, cout_g, 2, 2)
        assert const_input(h, 2).shape == (cout // 2,)
        assert attr(h, "group") == group // 2
    assert const_input(producer(result.model, "y"), 1).shape[1] == const_input(h, 2).shape[0]


# -- Gemm ------------------------------------------------------------------------------

GEMM = """
g (float[{xs}] x) => (float[4,5] y) {{
  h = Gemm<transA = {ta}, transB = {tb}>(x, w1, b1)
  r = Relu(h)
  {second}
}}
"""


@pytest.mark.parametrize("bias", [(8,), (1, 8), (4, 8)], ids=["bias-C", "bias-1xC", "bias-NxC"])
@pytest.mark.parametrize("ta", [0, 1], ids=["A", "At"])
@pytest.mark.parametrize("tb", [0, 1], ids=["B", "Bt"])
def test_gemm(ta, tb, bias):
    xs = "16,4" if ta else "4,16"
    w1 = (8, 16) if tb else (16, 8)
    # The consumer reads the hidden features through transA/transB too.
    if ta:
        second = "t = Transpose(r)\n  y = Gemm<transA = 1, transB = %d>(t, w2, b2)" % tb
    else:
        second = "y = Gemm<transB = %d>(r, w2, b2)" % tb
    w2 = (5, 8) if tb else (8, 5)
    proto = build(
        GEMM.format(xs=xs, ta=ta, tb=tb, second=second),
        {"w1": w1, "b1": bias, "w2": w2, "b2": (1,)},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    assert_frozen(group_of(an, "w2"), "graph output 'y' exposes axis 1")
    result, _, removed = prune_and_check(proto)
    assert len(removed) == 4
    h, y = producer(result.model, "h"), producer(result.model, "y")
    assert const_input(h, 1).shape == ((4, 16) if tb else (16, 4))
    assert const_input(h, 2).shape == bias[:-1] + (4,)
    assert const_input(y, 1).shape == ((5, 4) if tb else (4, 5))


def test_gemm_output_feeding_graph_output_is_frozen():
    proto = build(
        "g (float[2,16] x) => (float[2,8] y) { y = Gemm<transB = 1>(x, w, b) }",
        {"w": (8, 16), "b": (8,)},
    )
    assert_frozen(group_of(analysis(proto), "w"), "graph output 'y' exposes axis 1")


# -- MatMul ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "xs,ys", [("2,16", "2,4"), ("2,5,16", "2,5,4"), ("3,2,5,16", "3,2,5,4")], ids=["2d", "3d", "4d"]
)
def test_matmul_constant_weight(xs, ys):
    proto = build(
        f"""
        g (float[{xs}] x) => (float[{ys}] y) {{
          m = MatMul(x, w1)
          h = Add(m, b1)
          r = Relu(h)
          y = MatMul(r, w2)
        }}
        """,
        {"w1": (16, 8), "b1": (8,), "w2": (8, 4)},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    m = result.model
    assert const_input(producer(m, "m"), 1).shape == (16, 4)
    assert const_input(producer(m, "h"), 1).shape == (4,)
    assert const_input(producer(m, "y"), 1).shape == (4, 4)


def test_matmul_batched_constant_weight():
    """A 3-D weight [B,K,N] creates N features per batch entry, all pruned alike."""
    proto = build(
        """
        g (float[3,5,16] x) => (float[3,5,4] y) {
          h = MatMul(x, w1)
          r = Relu(h)
          y = MatMul(r, w2)
        }
        """,
        {"w1": (3, 16, 8), "w2": (3, 8, 4)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "h"), 1).shape == (3, 16, 4)
    assert const_input(producer(result.model, "y"), 1).shape == (3, 4, 4)


def test_matmul_of_two_activations_ties_the_contracted_axis():
    """q·kᵀ contracts the features of two projections: they become one group, and
    removing feature j from both equals zeroing it in the projections."""
    proto = build(
        """
        g (float[2,5,16] x) => (float[2,5,5] y) {
          q = MatMul(x, wq)
          k = MatMul(x, wk)
          kt = Transpose<perm = [0, 2, 1]>(k)
          y = MatMul(q, kt)
        }
        """,
        {"wq": (16, 8), "wk": (16, 8)},
    )
    an = analysis(proto)
    g = group_of(an, "wq")
    assert g is group_of(an, "wk") and g.size == 8 and g.prunable == g.classes
    assert {s["tensor"] for s in g.sources} == {"wq", "wk"}
    # No weight downstream reads the contracted features: removal is not the same as
    # zeroing a consumer, so the group is not claimed exact (it equals zeroing q's).
    assert not g.exact
    assert "MatMul" in inexact_reasons(g) and "contracted between two computed tensors" in inexact_reasons(g)
    result, _, _ = prune_and_check(proto, roles=("out",))
    assert const_input(producer(result.model, "q"), 1).shape == (16, 4)
    assert const_input(producer(result.model, "k"), 1).shape == (16, 4)


def test_matmul_with_constant_left_operand():
    """W·x (weight on the left) creates features along the weight's rows."""
    proto = build(
        """
        g (float[16,3] x) => (float[4,3] y) {
          h = MatMul(w1, x)
          r = Relu(h)
          y = MatMul(w2, r)
        }
        """,
        {"w1": (8, 16), "w2": (4, 8)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "h"), 0).shape == (4, 16)
    assert const_input(producer(result.model, "y"), 0).shape == (4, 4)


def test_chained_grouped_convs_merge_into_the_coarser_groups():
    """group=4 then group=2 over the same 8 channels: only blocks of 4 can go."""
    proto = build(
        """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
          a = Conv(x, w1)
          h = Conv<group = 4>(a, w2)
          k = Conv<group = 2>(h, w3)
          y = Conv(k, w4)
        }
        """,
        {"w1": (8, 3, 1, 1), "w2": (8, 2, 1, 1), "w3": (8, 4, 1, 1), "w4": (4, 8, 1, 1)},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g is group_of(an, "w3") and g.size == 2
    result, _, _ = prune_and_check(proto)
    m = result.model
    assert (attr(producer(m, "h"), "group"), attr(producer(m, "k"), "group")) == (2, 1)
    assert const_input(producer(m, "h"), 1).shape == (4, 2, 1, 1)
    assert const_input(producer(m, "k"), 1).shape == (4, 4, 1, 1)


@pytest.mark.parametrize("ta", [0, 1])
def test_gemm_with_constant_left_operand(ta):
    """Gemm(W, x): the weight's rows create features, and the next Gemm(W2, ·) reads
    them through its columns; both are tagged so importance scores see them."""
    w1 = (16, 8) if ta else (8, 16)
    w2 = (8, 4) if ta else (4, 8)
    proto = build(
        f"""
        g (float[16,3] x) => (float[4,3] y) {{
          h = Gemm<transA = {ta}>(w1, x)
          r = Relu(h)
          y = Gemm<transA = {ta}>(w2, r)
        }}
        """,
        {"w1": w1, "w2": w2},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    roles = {(name, axis, role) for kind, name, axis, role in g.members if kind == "const"}
    assert roles == {("w1", 1 if ta else 0, "out"), ("w2", 0 if ta else 1, "in")}
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "h"), 0).shape == ((16, 4) if ta else (4, 16))
    assert const_input(producer(result.model, "y"), 0).shape == ((4, 4) if ta else (4, 4))


def test_gemm_constant_left_operand_importance_uses_its_columns():
    """A weight on the left of Gemm(W, x) reads the features along its columns: the
    features it reads with the smallest L1 go first."""
    from onnxprune.compiler.pipeline import prune

    w1 = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    w2 = np.ones((4, 8), np.float32)
    w2[:, [1, 4, 6, 7]] *= 1e-3
    proto = build(
        """
        g (float[16,3] x) => (float[4,3] y) {
          h = Gemm(w1, x)
          r = Relu(h)
          y = Gemm(w2, r)
        }
        """,
        {"w1": w1, "w2": w2},
    )
    (entry,) = prune(proto, ratio=0.5).plan.channels
    assert entry["tensor"] == "w1" and entry["removed"] == [1, 4, 6, 7]


def test_convs_sharing_one_bias_prune_independently():
    """Exporters deduplicate identical biases: two groups reading one bias tensor get
    their own slices of it."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, bias)
          b = Conv<pads = [1, 1, 1, 1]>(x, w3, bias)
          p = Conv(a, w2)
          q = Conv(b, w4)
          y = Add(p, q)
        }
        """,
        {"w1": (8, 3, 3, 3), "w3": (8, 3, 3, 3), "bias": (8,), "w2": (4, 8, 1, 1), "w4": (4, 8, 1, 1)},
    )
    an = analysis(proto)
    assert group_of(an, "w1") is not group_of(an, "w3")
    result, _, _ = prune_and_check(proto, remove={"w1": [0, 1], "w3": [5, 6, 7]})
    bias = const_input(producer(load_model(proto), "a"), 2)
    np.testing.assert_array_equal(const_input(producer(result.model, "a"), 2), bias[2:])
    np.testing.assert_array_equal(const_input(producer(result.model, "b"), 2), bias[:5])
