"""The HTML page (`inspect --html`, `prune --html`) in a real headless Chromium.

The page must load with no console error, show the group and block counts that
`inspect --json --blocks` prints, highlight a group's members on the graph when its row
is chosen, expand a collapsed block, and for a prune show the widths, the plan, the
interface and the trajectory charts. Chromium comes from Debian (`apt-get install
chromium`; .ci/run installs it) and is driven by playwright (the `test` extra); without
either these tests skip and say so. The page's own checks (self-contained, small) need
no browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from onnxprune.cli import main

ROOT = os.path.join(os.path.dirname(__file__), "..")
RESNET20 = os.path.join(ROOT, "models", "zoo", "resnet20.onnx")
VIT = os.path.join(ROOT, "models", "transformers", "vit.onnx")
YOLO = os.path.join(ROOT, "models", "detection", "yolov8n_tiny.onnx")  # few residual blocks, many scoped nodes
DIGITS = os.path.join(ROOT, "models", "digits", "digits_resnet.onnx")
DIGITS_CALIB = os.path.join(ROOT, "models", "digits", "digits_calib.npz")
DIGITS_TEST = os.path.join(ROOT, "models", "digits", "digits_test.npz")
CHROMIUM = os.environ.get("ONNXPRUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: without the background ones Chromium keeps trying to reach Google.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def _inspect_json(capfd, model) -> dict:
    assert main(["inspect", model, "--json", "--blocks"]) == 0
    return json.loads(capfd.readouterr().out)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Pages written by the CLI: two inspections and one prune (everything-at-once)."""
    d = tmp_path_factory.mktemp("pages")
    out = {}
    for name, model in (("resnet20", RESNET20), ("vit", VIT), ("yolo", YOLO)):
        out[name] = str(d / f"{name}.html")
        assert main(["inspect", model, "--no-nodes", "--html", out[name]]) == 0
    out["prune"] = str(d / "prune.html")
    report = str(d / "report.json")
    argv = ["prune", DIGITS, "-o", str(d / "pruned.onnx"), "--method", "everything", "--calib", DIGITS_CALIB,
            "--samples", "64", "--target-flops", "0.2", "--report", report, "--html", out["prune"], "--eval", DIGITS_TEST]
    assert main(argv) == 0
    out["report"] = report
    return out


def test_page_is_one_self_contained_file(pages):
    with open(pages["resnet20"], encoding="utf-8") as f:
        text = f.read()
    # Nothing fetched when viewed: no external script, style, font or image.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "Permission is hereby granted" in text  # the vendored code's licences travel with it
    assert os.path.getsize(pages["prune"]) < 5 * 2**20


def test_html_to_a_missing_directory_writes_nothing(tmp_path, capfd):
    page = tmp_path / "no" / "page.html"
    assert main(["inspect", RESNET20, "--html", str(page)]) == 1
    assert "does not exist" in capfd.readouterr().err
    out = tmp_path / "out.onnx"
    assert main(["prune", RESNET20, "-o", str(out), "--html", str(page)]) == 1
    assert not out.exists() and not page.parent.exists()


def test_prune_html_and_output_must_differ(tmp_path, capfd):
    out = tmp_path / "out.onnx"
    assert main(["prune", RESNET20, "-o", str(out), "--html", str(out)]) == 2
    assert "different files" in capfd.readouterr().err


# ---- in a real browser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set ONNXPRUNE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    opened = []

    def load(path):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("request", lambda r: errors.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
        page.goto("file://" + os.path.abspath(path))
        page.wait_for_function("window.onnxprune && window.onnxprune.ready", timeout=30000)
        opened.append(page)
        return page, errors

    yield load
    for page in opened:
        page.close()


def _highlighted_nodes(page) -> list[set[int]]:
    """The node ids each highlighted unit stands for."""
    nodes = page.eval_on_selector_all(".unit.hl", "els => els.map(e => e.dataset.nodes)")
    return [{int(i) for i in n.split(",") if i} for n in nodes]


@pytest.mark.parametrize("name, model", [("resnet20", RESNET20), ("vit", VIT), ("yolo", YOLO)])
def test_counts_equal_inspect_json(pages, open_page, capfd, name, model):
    info = _inspect_json(capfd, model)
    page, errors = open_page(pages[name])
    assert page.inner_text("#group-count") == str(len(info["groups"]))
    assert page.inner_text("#prunable-count") == str(sum(1 for g in info["groups"] if g["prunable"]))
    assert page.inner_text("#block-count") == str(len(info["blocks"]))
    assert page.inner_text("#removable-count") == str(sum(1 for b in info["blocks"] if b["removable"]))
    assert page.locator("#groups-table tr[data-group]").count() == len(info["groups"])
    assert page.locator("#blocks-table tr[data-block]").count() == len(info["blocks"])
    # Blocks (and, past 200 units, name scopes) start collapsed: fewer units than nodes.
    assert page.locator(".unit.block").count() == len(info["blocks"]) > 0
    units = page.locator(".unit:not(.io)").count()
    assert units < info["total"]["nodes"] and units <= 200
    assert errors == []


@pytest.mark.parametrize("name", ["resnet20", "vit", "yolo"])
def test_choosing_a_group_highlights_its_members(pages, open_page, name):
    page, errors = open_page(pages[name])
    data = json.loads(page.inner_text("#data"))
    for g in data["groups"]:
        if not g["nodes"]:
            continue
        page.click(f'#groups-table tr[data-group="{g["id"]}"]')
        lit = _highlighted_nodes(page)
        members = set(g["nodes"])
        covered = set().union(*lit) if lit else set()
        # Shape plumbing and Constant nodes are hidden by default (unless inside a block).
        drawn = {i for i in members if not data["nodes"][i]["plumbing"] or data["nodes"][i]["block"] is not None}
        assert drawn <= covered, f"group {g['id']}: members {sorted(drawn - covered)} not highlighted"
        assert all(unit & members for unit in lit), f"group {g['id']}: a highlighted unit holds none of its members"
        assert page.locator("#details h3").inner_text().startswith(f"group {g['id']} ")
    assert errors == []


def test_frozen_group_says_why(pages, open_page, capfd):
    info = _inspect_json(capfd, RESNET20)
    frozen = next(g for g in info["groups"] if not g["prunable"])
    page, _ = open_page(pages["resnet20"])
    row = page.locator(f'#groups-table tr[data-group="{frozen["id"]}"]')
    assert frozen["frozen_reasons"][0] in row.inner_text()
    row.click()
    assert frozen["frozen_reasons"][0] in page.inner_text("#details .frozen")


def test_a_block_expands_on_the_graph(pages, open_page):
    page, errors = open_page(pages["resnet20"])
    before = page.locator(".unit").count()
    page.click('.unit.block[data-unit="b0"]')
    assert "block 0" in page.inner_text("#details h3")
    page.click("#toggle-block")
    data = json.loads(page.inner_text("#data"))
    inside = len(data["blocks"][0]["nodes"])
    assert page.locator(".unit").count() == before - 1 + inside
    assert page.locator('.unit.block[data-unit="b0"]').count() == 0
    page.click("#expand-all")
    assert page.locator(".unit.block").count() == 0
    assert page.locator(".unit.node").count() == len(data["nodes"])
    assert errors == []


def test_search_highlights_the_nodes_it_finds(pages, open_page):
    page, errors = open_page(pages["resnet20"])
    data = json.loads(page.inner_text("#data"))
    convs = {i for i, n in enumerate(data["nodes"]) if n["op"] == "Conv"}
    page.fill("#search", "conv")
    page.press("#search", "Enter")
    assert page.inner_text("#search-result") == f'{len([n for n in data["nodes"] if "conv" in n["name"].lower()])} nodes match "conv"'
    lit = _highlighted_nodes(page)
    assert convs <= set().union(*lit)
    page.fill("#search", 'no "such" node')
    page.press("#search", "Enter")
    assert page.inner_text("#search-result").startswith("0 nodes") and not _highlighted_nodes(page)
    # A node's details show its output shape.
    first = min(convs)
    page.evaluate(f"window.onnxprune.select({{type: 'node', id: {first}}})")
    assert "×" in page.inner_text("#details") and str(data["nodes"][first]["shapes"][0][1]) in page.inner_text("#details")
    assert errors == []


def test_shape_plumbing_is_hidden_until_asked_for(pages, open_page):
    page, errors = open_page(pages["vit"])
    data = json.loads(page.inner_text("#data"))
    plumbing = [i for i, n in enumerate(data["nodes"]) if n["plumbing"]]
    assert plumbing and page.inner_text("#plumbing-count") == str(len(plumbing))
    shown = {i for nodes in page.eval_on_selector_all(".unit.node", "els => els.map(e => e.dataset.nodes)")
             for i in map(int, nodes.split(","))}
    assert not shown & set(plumbing)
    page.check("#plumbing")
    page.click("#expand-all")
    assert page.locator(".unit.node").count() == len(data["nodes"])  # every node, plumbing included
    assert errors == []


def test_scopes_collapse_when_blocks_are_not_enough(pages, open_page):
    from onnxprune.tools.page_data import _scope

    page, errors = open_page(pages["yolo"])
    data = json.loads(page.inner_text("#data"))
    assert data["scopes"], "the YOLO neck has few residual blocks: scopes must collapse"
    for sc in data["scopes"]:
        names = [data["nodes"][i]["name"] for i in sc["nodes"]]
        depth = sc["name"].count("/") + 1
        assert len(names) > 1 and all(_scope(n, depth) == tuple(sc["name"].split("/")) for n in names)
        assert all(data["nodes"][i]["block"] is None for i in sc["nodes"])
    assert page.locator(".unit.scope").count() == len(data["scopes"])
    before = page.locator(".unit").count()
    first = data["scopes"][0]
    page.click('.unit.scope[data-unit="s0"]')
    assert page.locator(".unit").count() == before - 1 + len(first["nodes"])
    assert errors == []


def test_unscoped_names_collapse_into_runs_of_nodes(tmp_path):
    """A 3,000-node chain with no blocks and no name scopes (names like Paddle's) still
    starts with a bounded view: consecutive nodes collapse into runs."""
    import onnx
    from onnx import TensorProto, helper

    from onnxprune.tools.page_data import COLLAPSE_ABOVE, graph_data

    nodes, prev = [], "x"
    for i in range(3000):
        nodes.append(helper.make_node("Relu" if i % 2 else "Sigmoid", [prev], [f"v{i}"], name=f"op.{i}"))
        prev = f"v{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    data, _ = graph_data(str(path))
    held = [i for sc in data["scopes"] for i in sc["nodes"]]
    assert sorted(held) == list(range(3000))  # every node in exactly one run
    assert len(data["scopes"]) <= COLLAPSE_ABOVE
    assert all(sc["nodes"] == list(range(sc["nodes"][0], sc["nodes"][-1] + 1)) for sc in data["scopes"])


def test_runs_of_blocks_collapse_in_a_deep_network(open_page, tmp_path):
    """Past the limit of boxes even with one box per block, runs of consecutive blocks of
    a stage collapse (a 10k-node ResNet has ~1,400 blocks); here the limit is lowered so
    the digits ResNet-56 (27 blocks) shows it."""
    from onnxprune.tools.html_page import write_page
    from onnxprune.tools.page_data import graph_data

    data, _ = graph_data(DIGITS.replace("digits_resnet.onnx", "digits_resnet56.onnx"), collapse_above=20)
    assert data["runs"]
    stages = {b["id"]: b["stage"] for b in data["blocks"]}
    for r in data["runs"]:
        assert len(r["blocks"]) >= 2 and len({stages[b] for b in r["blocks"]}) == 1
        assert r["blocks"] == list(range(r["blocks"][0], r["blocks"][-1] + 1))  # consecutive
        held = {i for b in r["blocks"] for i in data["blocks"][b]["nodes"]}
        assert held <= set(r["nodes"])
    path = tmp_path / "runs.html"
    write_page(data, path)
    page, errors = open_page(str(path))
    assert page.locator(".unit.run").count() == len(data["runs"])
    assert page.inner_text("#block-count") == str(len(data["blocks"]))  # the counts do not change
    first = data["runs"][0]
    page.click('.unit.run[data-unit="r0"]')
    assert page.locator(".unit.run").count() == len(data["runs"]) - 1
    assert page.locator(".unit.block").count() >= len(first["blocks"])
    # A view too large to lay out is refused in words and the page stays as it was.
    page.evaluate("window.onnxprune.maxUnits(5)")
    before = page.locator(".unit").count()
    page.click("#expand-all")
    assert page.locator(".unit").count() == before
    assert "too many to draw at once" in page.inner_text("#layout-ms")
    page.evaluate("window.onnxprune.maxUnits(4000)")
    # dagre failing is handled the same way (its recursion overflows on very long chains).
    page.evaluate("window.__dagre = dagre; "
                  "window.dagre = {graphlib: __dagre.graphlib, layout: () => { throw new RangeError('too deep'); }}; 0")
    page.click("#expand-all")
    assert page.locator(".unit").count() == before and "could not be laid out" in page.inner_text("#layout-ms")
    page.evaluate("window.dagre = window.__dagre; 0")
    # Choosing a block inside a closed run opens the run.
    last = data["runs"][-1]["blocks"][0]
    page.click(".tab[data-tab=blocks]")
    page.click(f'#blocks-table tr[data-block="{last}"]')
    assert page.locator(f'.unit.block.hl[data-unit="b{last}"]').count() == 1
    assert errors == []


def test_prune_page_shows_what_the_prune_did(pages, open_page):
    with open(pages["report"]) as f:
        report = json.load(f)
    page, errors = open_page(pages["prune"])
    assert page.locator('.tab[data-tab="prune"]').is_visible()
    text = page.inner_text("#tab-prune")
    assert "a drop-in model" in text and report["interface"] == []
    # The widths table lists exactly the layers whose features changed, with the new width.
    rows = page.eval_on_selector_all("#widths-table tr", "rs => rs.slice(1).map(r => [...r.cells].map(c => c.textContent))")
    data = json.loads(page.inner_text("#data"))
    changed = [w for w in data["prune"]["widths"] if w["out_after"] != w["out_before"]]
    assert len(rows) == len(changed) > 0
    pruned_plan = report["plan"]
    assert page.locator("#plan-table tr").count() == 1 + len(pruned_plan["channels"])
    dropped = {b["add"] for b in pruned_plan["blocks"]}
    assert page.locator(".unit.block.dropped").count() == len(dropped) == report["blocks"]["dropped"]
    # One chart per series family, drawn by uPlot (a canvas each).
    # --eval scores every iteration; the last one's model is the emitted one.
    assert report["iterations"][-1]["accuracy"] == report["accuracy"]["after"]
    for chart in ("#chart-widths", "#chart-cka", "#chart-macs", "#chart-accuracy", "#chart-latency"):
        assert page.locator(f"{chart} canvas").count() >= 1, chart
    # Every refit layer with its output error before and after recovery.
    refit = [r for r in report["recovery"]["layers"] if r["error_before"] is not None]
    assert page.locator("#recovery-table tr").count() == 1 + len(refit) > 1
    its = page.eval_on_selector_all("#iterations-table tr", "rs => rs.length - 1")
    assert its == len(report["iterations"])
    assert errors == []


def test_page_of_a_pruned_width_matches_the_model(pages):
    """The widths the page shows are the emitted model's: checked against its weights."""
    import onnx

    with open(pages["prune"], encoding="utf-8") as f:
        text = f.read()
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.DOTALL).group(1))
    pruned = onnx.load(os.path.join(os.path.dirname(pages["prune"]), "pruned.onnx"))
    weights = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    convs = {n.name: weights.get(n.input[1]) for n in pruned.graph.node if n.op_type == "Conv"}
    checked = 0
    for w in data["prune"]["widths"]:
        if w["op"] == "Conv":
            shape = convs.get(w["node"])
            assert (None if shape is None else shape[0]) == w["out_after"], w["node"]
            checked += 1
    assert checked > 10
    assert np.isfinite(data["prune"]["cost"]["macs_reduction"])
