"""How fast the HTML page is built and drawn, and how big it is.

    python benchmarks/html_page.py [MODEL.onnx ...]

For each model: seconds to build the page in Python (`inspect --html`: analysis, blocks,
costs, page), the page's size, and in Debian's headless Chromium (playwright) the
seconds from opening the file to the drawn page, the first layout's share of that, and
the layout of every node with all blocks and scopes expanded. The issue's goals: a
ViT-B/16 page (export one with benchmarks/export_vit_b16.py) drawn in under 2 s, page
and assets under 5 MB. Defaults: /tmp/vit_b16.onnx if it exists, and the committed
ViT, ResNet-56 and YOLO fixtures, and a 10k-node synthetic ResNet ("synthetic-10k").
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # synthetic.py

from onnxprune.tools.html_page import write_page
from onnxprune.tools.page_data import graph_data

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
DEFAULTS = ["/tmp/vit_b16.onnx", "models/transformers/vit.onnx", "models/digits/digits_resnet56.onnx",
            "models/detection/yolov8n_tiny.onnx", "synthetic-10k"]


def measure(browser, model: str, out_dir: str) -> dict:
    start = time.perf_counter()
    data, _ = graph_data(model)
    page_path = os.path.join(out_dir, os.path.basename(model) + ".html")
    write_page(data, page_path)
    built = time.perf_counter() - start
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    start = time.perf_counter()
    page.goto("file://" + page_path)
    page.wait_for_function("window.onnxprune && window.onnxprune.ready")
    drawn = time.perf_counter() - start
    first_ms = page.evaluate("window.onnxprune.renderMs")
    units = page.locator(".unit").count()
    start = time.perf_counter()
    page.click("#expand-all")
    expanded = time.perf_counter() - start
    start = time.perf_counter()
    page.check("#plumbing")  # every node: shape ops and constants too
    everything = time.perf_counter() - start
    all_units = page.locator(".unit.node").count()
    page.close()
    return {"model": os.path.basename(model), "nodes": len(data["nodes"]), "units": units, "built_s": built,
            "bytes": os.path.getsize(page_path), "drawn_s": drawn, "script_ms": first_ms, "expand_s": expanded,
            "all_s": everything, "all_units": all_units, "errors": len(errors)}


def main(models: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("ONNXPRUNE_CHROMIUM", "/usr/bin/chromium")
    rows = []
    with tempfile.TemporaryDirectory() as out, sync_playwright() as p:
        if "synthetic-10k" in models:  # a 10k-node residual CNN (benchmarks/synthetic.py): ~1,400 blocks
            import onnx
            from synthetic import residual_cnn

            models = [os.path.join(out, "synthetic_10k.onnx") if m == "synthetic-10k" else m for m in models]
            onnx.save(residual_cnn(target_nodes=10000), os.path.join(out, "synthetic_10k.onnx"))
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        for model in models:
            if os.path.exists(model):
                rows.append(measure(browser, model, out))
        browser.close()
    print("| model | nodes | units drawn first | build (Python) | page size | open → drawn (Chromium) | of which script "
          "| expand all | + shape ops (nodes drawn) | page errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['nodes']} | {r['units']} | {r['built_s']:.2f} s | {r['bytes'] / 1e6:.2f} MB | "
              f"{r['drawn_s']:.2f} s | {r['script_ms'] / 1e3:.2f} s | {r['expand_s']:.2f} s | "
              f"{r['all_s']:.2f} s ({r['all_units']}) | {r['errors']} |")


if __name__ == "__main__":
    os.chdir(ROOT)
    main(sys.argv[1:] or DEFAULTS)
