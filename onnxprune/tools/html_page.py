"""One self-contained HTML page for a model (`inspect --html`) or a prune (`prune --html`).

Everything is inlined: the data (`tools/page_data.py`), onnxprune's own inspector.js and
.css, and the vendored dagre and uPlot (`tools/html/VENDORED.md`), each with its licence
in a comment above it. Viewing the page needs no network and no server.

What this does not do: lay out the graph (the browser does, with dagre, so the page stays
small and a block can be expanded after loading), or write the file itself (callers pass
the text to `model_io`'s staged writes, so a failed run leaves nothing behind).
"""

from __future__ import annotations

import html
import json
from importlib import resources

_VENDORED = (("dagre.min.js", ("LICENSE.dagre-bundle",)), ("uPlot.iife.min.js", ("LICENSE.uplot",)))


def _asset(name: str) -> str:
    text = resources.files("onnxprune.tools").joinpath("html", name).read_text(encoding="utf-8")
    # The vendored files point at source maps the page does not carry.
    return "\n".join(line for line in text.splitlines() if not line.startswith("//# sourceMappingURL="))


def _comment(text: str) -> str:
    # The licence text goes into a /* */ comment: keep it from closing the comment early.
    return "/*\n" + text.replace("*/", "* /") + "\n*/\n"


def _script(body: str) -> str:
    if "</script" in body.lower():  # would end the inline script early
        raise ValueError("an inlined script contains '</script'")
    return f"<script>\n{body}\n</script>"


def _json_for_script(data: dict) -> str:
    # "<" escaped so no name in the data can close the <script> it sits in.
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict) -> str:
    """The page's text for `data` (from `page_data.graph_data`, with `prune` filled in
    for a prune)."""
    scripts = [
        _script(_comment(" ".join(_asset(lic) for lic in lics)) + _asset(js)) for js, lics in _VENDORED
    ]
    scripts.append(_script(_asset("inspector.js")))
    page = _asset("page.html")
    page = page.replace("{{title}}", html.escape(str(data.get("model", "model"))))
    page = page.replace("{{uplot_css}}", _asset("uPlot.min.css"))
    page = page.replace("{{css}}", _asset("inspector.css"))
    page = page.replace("{{scripts}}", "\n".join(scripts))
    return page.replace("{{data}}", _json_for_script(data))


def write_page(data: dict, path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_page(data))


def inspect_page(source, path, **options) -> dict:
    """Write the page of `source` to `path`; returns its data (counts for callers)."""
    from onnxprune.tools.page_data import graph_data

    data, _ = graph_data(source, **options)
    write_page(data, path)
    return data


def prune_page(source, result, **options) -> dict:
    """The page's data for a prune of `source` that gave `result` (a PruneResult): the
    original graph, with what the prune did."""
    from onnxprune.tools.page_data import graph_data, prune_data

    data, ws = graph_data(source, **options)
    data["prune"] = prune_data(ws.model, result.model, result.report, result.plan.to_dict())
    return data
