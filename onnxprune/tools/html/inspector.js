// onnxprune's page: draws the data of onnxprune/tools/page_data.py (the <script id="data">).
// Residual blocks start collapsed (and, in very deep networks, runs of them; where blocks
// are few, name scopes or runs of nodes), so a graph of thousands of nodes lays out as at
// most a few hundred units; each expands (and lays out again) when asked. dagre places
// the units in layers, as Netron does; uPlot draws the charts of a prune.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const S = { expanded: new Set(), openScopes: new Set(), openRuns: new Set(), selected: null, heat: "macs", view: { x: 0, y: 0, k: 1 }, unitEls: new Map() };
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  const human = (n) => {
    if (n === null || n === undefined) return "–";
    for (const [u, s] of [["G", 1e9], ["M", 1e6], ["K", 1e3]]) if (Math.abs(n) >= s) return (n / s).toFixed(2) + " " + u;
    return String(Math.round(n));
  };
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  const blockById = new Map(D.blocks.map((b) => [b.id, b]));
  const groupsOfNode = new Map();
  for (const g of D.groups) for (const i of g.nodes) {
    if (!groupsOfNode.has(i)) groupsOfNode.set(i, []);
    groupsOfNode.get(i).push(g.id);
  }
  const widthByNode = new Map(((D.prune && D.prune.widths) || []).map((w) => [w.node, w]));
  const droppedAdds = new Set(((D.prune && D.prune.plan.blocks) || []).map((b) => b.add));
  const isDropped = (b) => droppedAdds.has(b.add);

  // ---- units: a node, or a collapsed block standing for its nodes --------------------
  function unitOf(i) {
    const n = D.nodes[i];
    if (n.run !== null && !S.openRuns.has(n.run)) return "r" + n.run;
    if (n.block !== null && !S.expanded.has(n.block)) return "b" + n.block;
    if (n.scope !== null && !S.openScopes.has(n.scope)) return "s" + n.scope;
    return "n" + i;
  }
  function unitNodes(u) {
    if (u[0] === "b") return blockById.get(+u.slice(1)).nodes;
    if (u[0] === "s") return D.scopes[+u.slice(1)].nodes;
    if (u[0] === "r") return D.runs[+u.slice(1)].nodes;
    if (u[0] === "n") return [+u.slice(1)];
    return [];
  }
  function heatOf(nodes) {
    if (S.heat === "none") return null;
    const key = S.heat === "params" ? "params" : "macs";
    let v = 0;
    for (const i of nodes) v += D.nodes[i][key];
    const total = D.total[key] || 1;
    return v / total;
  }
  function heatColor(share) {
    if (share === null || share <= 0) return "#f4f4f4";
    // sqrt: small layers stay visible next to the few that dominate
    const t = Math.min(1, Math.sqrt(share / maxShare()));
    const r = 255, g = Math.round(245 - 170 * t), b = Math.round(225 - 190 * t);
    return `rgb(${r},${g},${b})`;
  }
  let maxShareCache = null;
  function maxShare() {
    const key = S.heat + [...S.expanded].join() + "|" + [...S.openScopes].join() + "|" + [...S.openRuns].join();
    if (maxShareCache && maxShareCache.k === key) return maxShareCache.v;
    let m = 1e-12;
    for (const u of currentUnits()) m = Math.max(m, heatOf(unitNodes(u)) || 0);
    maxShareCache = { k: key, v: m };
    return m;
  }
  // Shape plumbing is hidden unless asked for (the "shape ops" box): it feeds only shape
  // slots (Reshape targets, Slice bounds), so hiding it drops no edge that carries data.
  const hidden = (i) => !S.showPlumbing && D.nodes[i].plumbing && unitOf(i)[0] === "n";
  function currentUnits() {
    const units = new Set();
    for (let i = 0; i < D.nodes.length; i++) if (!hidden(i)) units.add(unitOf(i));
    return units;
  }
  function unitLabel(u) {
    if (u[0] === "b") {
      const b = blockById.get(+u.slice(1));
      return [`block ${b.id} · ${b.kind}${isDropped(b) ? " · dropped" : ""}`, `${b.nodes.length} nodes · ${human(b.macs)} MACs`];
    }
    if (u[0] === "r") {
      const r = D.runs[+u.slice(1)];
      const dropped = r.blocks.filter((b) => isDropped(blockById.get(b))).length;
      return [`${r.name} · stage ${r.stage}`, `${r.blocks.length} blocks${dropped ? ` (${dropped} dropped)` : ""} · ${human(r.nodes.reduce((a, i) => a + D.nodes[i].macs, 0))} MACs`];
    }
    if (u[0] === "s") {
      const sc = D.scopes[+u.slice(1)];
      return [sc.name.length > 30 ? "…" + sc.name.slice(-29) : sc.name, `scope · ${sc.nodes.length} nodes · ${human(sc.nodes.reduce((a, i) => a + D.nodes[i].macs, 0))} MACs`];
    }
    if (u[0] === "i") { const v = D.inputs[+u.slice(1)]; return ["input", v.name + " " + dims(v.shape)]; }
    if (u[0] === "o") { const v = D.outputs[+u.slice(1)]; return ["output", v.name + " " + dims(v.shape)]; }
    const n = D.nodes[+u.slice(1)];
    const w = widthByNode.get(n.name);
    let sub = n.name.length > 28 ? "…" + n.name.slice(-27) : n.name;
    if (w) sub = w.out_after === null ? "removed" : `${w.out_before} → ${w.out_after}`;
    return [n.op, sub];
  }
  const dims = (s) => "[" + s.map((d) => (d === null ? "?" : d)).join("×") + "]";

  // ---- layout and drawing -------------------------------------------------------------
  // dagre lays out 1,500 boxes in under a second; a chain of ~2,000 overflows its
  // recursion. Past this many boxes, or when dagre fails, opening is refused in words and
  // the last view stays.
  let MAX_UNITS = 4000;
  function draw() {
    const t0 = performance.now();
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 14, ranksep: 26, marginx: 20, marginy: 20 });
    g.setDefaultEdgeLabel(() => ({}));
    const units = currentUnits();
    const refuse = (why) => {
      Object.assign(S, S.lastGood());  // back to the last view that could be drawn (still on screen)
      $("#plumbing").checked = !!S.showPlumbing;
      $("#layout-ms").textContent = `${units.size} boxes ${why}: open runs, blocks or scopes one at a time`;
    };
    if (units.size > MAX_UNITS && S.lastGood) { refuse("are too many to draw at once"); return; }
    D.inputs.forEach((_, k) => units.add("i" + k));
    D.outputs.forEach((_, k) => units.add("o" + k));
    for (const u of units) {
      const [a, b] = unitLabel(u);
      const w = Math.max(90, 7 * Math.max(a.length, b.length) + 16);
      g.setNode(u, { width: w, height: "bsr".includes(u[0]) ? 44 : 36 });
    }
    for (const [a, b] of D.edges) {
      if (hidden(a) || hidden(b)) continue;
      const ua = unitOf(a), ub = unitOf(b);
      if (ua !== ub) g.setEdge(ua, ub);
    }
    D.inputs.forEach((v, k) => v.to.forEach((t) => { if (!hidden(t)) g.setEdge("i" + k, unitOf(t)); }));
    D.outputs.forEach((v, k) => { if (v.from !== null && !hidden(v.from)) g.setEdge(unitOf(v.from), "o" + k); });
    if (!S.showPlumbing) {
      // A node left with no edge once the shape ops are hidden (a Squeeze of a constant
      // feeding them) and no MACs says nothing: it goes with them.
      for (const u of [...units]) {
        if (u[0] === "n" && !g.nodeEdges(u).length && !D.nodes[+u.slice(1)].macs) { g.removeNode(u); units.delete(u); }
      }
    }
    try {
      dagre.layout(g);
    } catch (err) {  // a long chain overflows dagre's recursion (a ResNet of ~2,000 nodes expanded whole)
      if (!S.lastGood) throw err;
      refuse(`could not be laid out at once (${err.message})`);
      return;
    }
    S.lastGood = snapshot();

    const vp = $("#viewport");
    vp.replaceChildren();
    S.unitEls.clear();
    maxShareCache = null;
    const edges = svgEl("g", { class: "edges" });
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      const d = "M" + pts.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("L");
      edges.appendChild(svgEl("path", { d, "marker-end": "url(#arrow)" }));
    }
    vp.appendChild(edges);
    for (const u of g.nodes()) {
      const box = g.node(u);
      const nodes = unitNodes(u);
      const cls = ["unit", { b: "block", n: "node", s: "scope", r: "run" }[u[0]] || "io"];
      if (u[0] === "b") {
        const b = blockById.get(+u.slice(1));
        cls.push(b.removable ? "removable" : "kept");
        if (isDropped(b)) cls.push("dropped");
      }
      if (u[0] === "n") {
        const w = widthByNode.get(D.nodes[nodes[0]].name);
        if (w && w.out_after === null) cls.push("gone");
        else if (w && w.out_after < w.out_before) cls.push("narrowed");
      }
      const ge = svgEl("g", {
        class: cls.join(" "), "data-unit": u, "data-nodes": nodes.join(","),
        transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`,
      });
      const rect = svgEl("rect", { width: box.width, height: box.height, rx: "bsr".includes(u[0]) ? 8 : 4 });
      if (u[0] !== "i" && u[0] !== "o") rect.setAttribute("fill", heatColor(heatOf(nodes)));
      ge.appendChild(rect);
      const [a, b] = unitLabel(u);
      const t1 = svgEl("text", { x: 8, y: 15, class: "op" }); t1.textContent = a;
      const t2 = svgEl("text", { x: 8, y: 29, class: "sub" }); t2.textContent = b;
      ge.append(t1, t2);
      const title = svgEl("title"); title.textContent = tooltip(u); ge.appendChild(title);
      ge.addEventListener("click", (ev) => { ev.stopPropagation(); onUnitClick(u); });
      vp.appendChild(ge);
      S.unitEls.set(u, ge);
    }
    S.graphBox = { w: g.graph().width, h: g.graph().height };
    applySelection();
    $("#layout-ms").textContent = `${g.nodeCount()} units laid out in ${Math.round(performance.now() - t0)} ms`;
  }
  function snapshot() {
    const copy = { expanded: new Set(S.expanded), openScopes: new Set(S.openScopes), openRuns: new Set(S.openRuns),
      showPlumbing: S.showPlumbing };
    return () => ({ expanded: new Set(copy.expanded), openScopes: new Set(copy.openScopes),
      openRuns: new Set(copy.openRuns), showPlumbing: copy.showPlumbing });
  }
  function tooltip(u) {
    if (u[0] === "b") {
      const b = blockById.get(+u.slice(1));
      return `block ${b.id} (${b.kind}, stage ${b.stage}): ${b.removable ? "removable" : "not removable: " + b.reason}` +
        `\n${human(b.macs)} MACs (${(b.macs_percent || 0).toFixed(2)} % of the model); click to expand`;
    }
    if (u[0] === "s") return `name scope ${D.scopes[+u.slice(1)].name}: click to expand`;
    if (u[0] === "r") return `${D.runs[+u.slice(1)].name}: a run of residual blocks; click to show them`;
    if (u[0] !== "n") return unitLabel(u).join(" ");
    const n = D.nodes[+u.slice(1)];
    const shape = n.shapes && n.shapes[0] ? " → " + dims(n.shapes[0]) : "";
    return `${n.name} (${n.op})${shape}\n${human(n.macs)} MACs, ${human(n.params)} params`;
  }
  function onUnitClick(u) {
    if (u[0] === "b") { select({ type: "block", id: +u.slice(1) }); return; }
    if (u[0] === "n") select({ type: "node", id: +u.slice(1) });
    if (u[0] === "s") { S.openScopes.add(+u.slice(1)); draw(); }  // a scope has nothing to say but its nodes
    if (u[0] === "r") { S.openRuns.add(+u.slice(1)); draw(); }
  }

  // ---- pan and zoom ---------------------------------------------------------------------
  function applyView() {
    const v = S.view;
    $("#viewport").setAttribute("transform", `translate(${v.x},${v.y}) scale(${v.k})`);
  }
  function fit() {
    const r = $("#svg").getBoundingClientRect();
    // A long chain would shrink to unreadable: keep labels legible and let it pan.
    const k = Math.max(Math.min(r.width / (S.graphBox.w || 1), r.height / (S.graphBox.h || 1), 1.5), Math.min(0.6, r.width / (S.graphBox.w || 1)));
    S.view = { k, x: (r.width - S.graphBox.w * k) / 2, y: 40 };
    applyView();
  }
  function focusUnits(units) {
    const boxes = units.map((u) => S.unitEls.get(u)).filter(Boolean).map((e) => e.getBBox && bboxOf(e));
    if (!boxes.length) return;
    const r = $("#svg").getBoundingClientRect();
    const b = boxes[0];
    S.view.x = r.width / 2 - b.cx * S.view.k;
    S.view.y = r.height / 3 - b.cy * S.view.k;
    applyView();
  }
  function bboxOf(e) {
    const m = /translate\(([-\d.]+),([-\d.]+)\)/.exec(e.getAttribute("transform"));
    const rect = e.querySelector("rect");
    return { cx: +m[1] + rect.width.baseVal.value / 2, cy: +m[2] + rect.height.baseVal.value / 2 };
  }
  function setupPanZoom() {
    const svg = $("#svg");
    svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = svg.getBoundingClientRect();
      const px = ev.clientX - r.left, py = ev.clientY - r.top;
      const k = Math.max(0.05, Math.min(4, S.view.k * Math.exp(-ev.deltaY * 0.0015)));
      S.view.x = px - ((px - S.view.x) * k) / S.view.k;
      S.view.y = py - ((py - S.view.y) * k) / S.view.k;
      S.view.k = k;
      applyView();
    }, { passive: false });
    let drag = null;
    svg.addEventListener("mousedown", (ev) => { drag = { x: ev.clientX - S.view.x, y: ev.clientY - S.view.y }; });
    window.addEventListener("mousemove", (ev) => {
      if (!drag) return;
      S.view.x = ev.clientX - drag.x; S.view.y = ev.clientY - drag.y; applyView();
    });
    window.addEventListener("mouseup", () => { drag = null; });
  }

  // ---- selection: highlight on the graph, details in the side panel ---------------------
  function selectedNodes() {
    const s = S.selected;
    if (!s) return [];
    if (s.type === "search") return s.nodes;
    if (s.type === "group") return D.groups[s.id].nodes;
    if (s.type === "block") return blockById.get(s.id).nodes;
    return [s.id];
  }
  function applySelection() {
    for (const e of S.unitEls.values()) e.classList.remove("hl");
    const hit = new Set(selectedNodes().filter((i) => !hidden(i)).map(unitOf));
    for (const u of hit) { const e = S.unitEls.get(u); if (e) e.classList.add("hl"); }
    document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
    if (S.selected && (S.selected.type === "group" || S.selected.type === "block")) {
      const row = document.querySelector(`tr[data-${S.selected.type}="${S.selected.id}"]`);
      if (row) row.classList.add("selected");
    }
    $("#selection-count").textContent = S.selected ? `${hit.size} units highlighted` : "";
    return [...hit];
  }
  function select(sel) {
    S.selected = sel;
    // Runs of blocks open for what is chosen when they are few (a block: its own run).
    const runs = new Set(selectedNodes().map((i) => D.nodes[i].run).filter((r) => r !== null && !S.openRuns.has(r)));
    if (runs.size && (runs.size <= 3 || sel.type === "block")) { runs.forEach((r) => S.openRuns.add(r)); draw(); }
    if (sel.type !== "block") {
      // A group inside a few blocks is shown inside them; one that runs through many
      // (a residual stream) lights the collapsed blocks instead of expanding them all.
      const inside = new Set(selectedNodes().map((i) => D.nodes[i].block).filter((b) => b !== null && !S.expanded.has(b)));
      const scoped = new Set(selectedNodes().map((i) => D.nodes[i].scope).filter((c) => c !== null && !S.openScopes.has(c)));
      let redraw = false;
      if (inside.size && inside.size <= 3) { inside.forEach((b) => S.expanded.add(b)); redraw = true; }
      if (scoped.size && scoped.size <= 3) { scoped.forEach((c) => S.openScopes.add(c)); redraw = true; }
      if (redraw) draw();
    }
    const hit = applySelection();
    focusUnits(hit);
    showDetails();
  }
  function search(text) {
    // Nodes whose name or op contains `text` (case-insensitive): highlighted and listed.
    const q = text.trim().toLowerCase();
    if (!q) { S.selected = null; applySelection(); showDetails(); return; }
    const nodes = [];
    D.nodes.forEach((n, i) => { if (n.name.toLowerCase().includes(q) || n.op.toLowerCase() === q) nodes.push(i); });
    select({ type: "search", id: q, nodes });
  }
  function showDetails() {
    const box = $("#details");
    box.replaceChildren();
    const s = S.selected;
    if (!s) return;
    if (s.type === "search") {
      box.append(el("h3", { id: "search-result" }, `${s.nodes.length} nodes match "${s.id}"`), nodeLinks(s.nodes));
    } else if (s.type === "group") {
      const g = D.groups[s.id];
      box.append(el("h3", {}, `group ${g.id} · ${g.kind} · ${g.size} units`));
      box.append(kv([
        ["prunable units", `${g.prunable} of ${g.size}`], ["exact", g.exact ? "yes" : "no"],
        ["MACs per unit", human(g.macs_per_channel)], ["params per unit", human(g.params_per_channel)],
        ["tensors in the group", String(g.members)], ["nodes", String(g.nodes.length)],
      ]));
      if (g.frozen_reasons.length) box.append(list("why frozen", g.frozen_reasons, "frozen"));
      if (g.inexact_reasons.length) box.append(list("why not exact", g.inexact_reasons));
      box.append(list("sources (weights that make these units)", g.sources));
      if (D.prune && D.prune.groups) {
        const r = D.prune.groups.removed_by_group[g.id];
        box.append(el("p", {}, `removed by this prune: ${r || 0} of ${g.size}`));
      }
      box.append(nodeLinks(g.nodes));
    } else if (s.type === "block") {
      const b = blockById.get(s.id);
      box.append(el("h3", {}, `block ${b.id} · ${b.kind} · stage ${b.stage}`));
      box.append(kv([
        ["removable", b.removable ? "yes" : "no: " + b.reason], ["Add node", b.add],
        ["MACs", `${human(b.macs)} (${(b.macs_percent || 0).toFixed(2)} % of the model)`],
        ["branch nodes", String(b.branch_nodes)],
      ].concat(D.prune ? [["this prune", isDropped(b) ? "dropped it" : "kept it"]] : [])));
      const btn = el("button", { id: "toggle-block" }, S.expanded.has(b.id) ? "collapse this block" : "expand this block");
      btn.addEventListener("click", () => {
        if (S.expanded.has(b.id)) S.expanded.delete(b.id); else S.expanded.add(b.id);
        draw(); showDetails();
      });
      box.append(btn, nodeLinks(b.nodes));
    } else {
      const n = D.nodes[s.id];
      box.append(el("h3", {}, `${n.op} · ${n.name}`));
      const rows = [["MACs", human(n.macs)], ["params", human(n.params)],
        ["block", n.block === null ? "none" : "block " + n.block]];
      const w = widthByNode.get(n.name);
      if (w) rows.push(["output features", w.out_after === null ? `${w.out_before} → removed` : `${w.out_before} → ${w.out_after}`]);
      box.append(kv(rows));
      box.append(list("inputs", n.in), list("weights", n.weights),
        list("outputs", n.out.map((o, k) => (n.shapes && n.shapes[k] ? `${o} ${dims(n.shapes[k])}` : o))));
      const gs = groupsOfNode.get(s.id) || [];
      const p = el("p", {}, "groups: ");
      for (const gid of gs) { const a = el("a", { href: "#" }, `group ${gid} `); a.onclick = (e) => { e.preventDefault(); select({ type: "group", id: gid }); }; p.append(a); }
      box.append(p);
    }
  }
  function kv(rows) {
    const t = el("table", { class: "kv" });
    for (const [k, v] of rows) { const tr = el("tr"); tr.append(el("th", {}, k), el("td", {}, v)); t.append(tr); }
    return t;
  }
  function list(title, items, cls) {
    const d = el("div", { class: cls || "" });
    d.append(el("h4", {}, title));
    const ul = el("ul");
    for (const x of items) ul.append(el("li", {}, x));
    d.append(ul);
    return d;
  }
  function nodeLinks(ids) {
    const d = el("div", { class: "nodelinks" });
    d.append(el("h4", {}, "nodes"));
    for (const i of ids.slice(0, 200)) {
      const a = el("a", { href: "#" }, D.nodes[i].name);
      a.onclick = (e) => {
        e.preventDefault();
        const n = D.nodes[i];
        if (n.run !== null) S.openRuns.add(n.run);
        if (n.block !== null) S.expanded.add(n.block);
        if (n.scope !== null) S.openScopes.add(n.scope);
        if (n.plumbing) { S.showPlumbing = true; $("#plumbing").checked = true; }
        draw();
        select({ type: "node", id: i });
      };
      d.append(a, el("br"));
    }
    if (ids.length > 200) d.append(el("span", {}, `… and ${ids.length - 200} more`));
    return d;
  }

  // ---- side tables --------------------------------------------------------------------
  function groupsTable() {
    const t = el("table", { id: "groups-table", class: "rows" });
    const h = el("tr");
    for (const c of ["group", "kind", "size", "prunable", "exact", "MACs/unit", "frozen because"]) h.append(el("th", {}, c));
    t.append(h);
    for (const g of D.groups) {
      const tr = el("tr", { "data-group": g.id, class: g.prunable ? "prunable" : "frozen" });
      tr.append(el("td", {}, `group ${g.id}`), el("td", {}, g.kind), el("td", {}, g.size), el("td", {}, g.prunable),
        el("td", {}, g.exact ? "yes" : "no"), el("td", {}, human(g.macs_per_channel)),
        el("td", { class: "why" }, g.frozen_reasons.join("; ")));
      tr.addEventListener("click", () => select({ type: "group", id: g.id }));
      t.append(tr);
    }
    return t;
  }
  function blocksTable() {
    const t = el("table", { id: "blocks-table", class: "rows" });
    const h = el("tr");
    for (const c of ["block", "kind", "stage", "MACs %", "removable, or why not"]) h.append(el("th", {}, c));
    t.append(h);
    for (const b of D.blocks) {
      const tr = el("tr", { "data-block": b.id, class: b.removable ? "prunable" : "frozen" });
      tr.append(el("td", {}, `block ${b.id}`), el("td", {}, b.kind), el("td", {}, b.stage),
        el("td", {}, (b.macs_percent || 0).toFixed(2)), el("td", { class: "why" }, b.removable ? "yes" : "no: " + b.reason));
      tr.addEventListener("click", () => select({ type: "block", id: b.id }));
      t.append(tr);
    }
    return t;
  }

  // ---- a prune: summary, plan, interface, widths and trajectory charts ----------------
  function prunePanel() {
    const P = D.prune, box = $("#tab-prune");
    const c = P.cost;
    const rows = [
      ["method", P.method], ["MACs", `${human(c.before.macs)} → ${human(c.after.macs)} (−${pct(c.macs_reduction)})`],
      ["parameters", `${human(c.before.params)} → ${human(c.after.params)} (−${pct(c.params_reduction)})`],
      ["verified", P.verification ? (P.verification.ok ? "yes: " : "no: ") + P.verification.message : "skipped"],
      ["recovery", P.recovery.ran || ("none: " + (P.recovery.why_not || ""))],
    ];
    if (P.latency) rows.push(["latency (ONNX Runtime)", `${(1e3 * P.latency.before_s).toFixed(3)} ms → ${(1e3 * P.latency.after_s).toFixed(3)} ms (${P.latency.speedup.toFixed(2)}×)`]);
    if (P.accuracy) rows.push(["top-1 accuracy", `${(100 * P.accuracy.before).toFixed(2)} % → ${(100 * P.accuracy.after).toFixed(2)} %`]);
    if (P.target_reached !== null && P.target_reached !== undefined) rows.push(["target reached", P.target_reached ? "yes" : "no: " + P.stopped_because]);
    if (P.blocks) rows.push(["blocks dropped", String(P.blocks.dropped)]);
    if (P.groups) rows.push(["units removed", String(P.groups.channels_removed)]);
    box.append(el("h3", {}, "what this prune did"), kv(rows));

    box.append(el("h3", {}, "interface"));
    if (!P.interface.length) box.append(el("p", { id: "interface-same" }, "same inputs and outputs, same shapes: a drop-in model"));
    else {
      const t = el("table", { class: "rows", id: "interface-table" });
      t.append(trOf(["th", "direction", "name", "before", "after"]));
      for (const ch of P.interface) t.append(trOf(["td", ch.direction, ch.name, dims(ch.shape_before), dims(ch.shape_after)]));
      box.append(t);
    }

    const changed = P.widths.filter((w) => w.out_after !== w.out_before);
    box.append(el("h3", {}, `widths per layer (${changed.length} of ${P.widths.length} layers changed)`));
    const chart = el("div", { id: "chart-widths" });
    box.append(chart);
    charts.push(() => barChart(chart, P.widths));
    const wt = el("table", { class: "rows", id: "widths-table" });
    wt.append(trOf(["th", "node", "op", "out before", "out after", "in before", "in after"]));
    for (const w of changed) wt.append(trOf(["td", w.node, w.op, w.out_before, w.out_after === null ? "removed" : w.out_after, w.in_before, w.in_after === null ? "removed" : w.in_after]));
    box.append(wt);

    const refit = (P.recovery.layers || []).filter((r) => r.error_before !== null && r.error_before !== undefined);
    if (refit.length) {
      box.append(el("h3", {}, `recovery (${P.recovery.ran}): ${refit.length} layers refit`));
      const rt = el("table", { class: "rows", id: "recovery-table" });
      rt.append(trOf(["th", "layer", "refit", "output error before", "after", "iteration"]));
      for (const r of refit) rt.append(trOf(["td", r.node, r.refit, fmt(r.error_before), r.error_after === null ? "–" : fmt(r.error_after), r.iteration === undefined ? "–" : r.iteration]));
      box.append(rt);
    }

    box.append(el("h3", {}, "plan"));
    const pt = el("table", { class: "rows", id: "plan-table" });
    pt.append(trOf(["th", "weight", "axis", "group", "removed", "of"]));
    for (const ch of P.plan.channels || []) pt.append(trOf(["td", ch.tensor, ch.axis, ch.group, ch.removed.length, ch.size]));
    box.append(pt);
    if ((P.plan.blocks || []).length) box.append(list("blocks dropped (by their Add node)", P.plan.blocks.map((b) => b.add || JSON.stringify(b))));

    const its = P.iterations || [];
    if (its.length) {
      box.append(el("h3", {}, `trajectory (${its.length} iterations)`));
      const x = its.map((s) => s.iteration);
      const get = (f) => its.map((s) => { const v = f(s); return v === undefined ? null : v; });
      const cka = P.method === "everything"
        ? [["layer candidate", get((s) => s.layer_candidate && s.layer_candidate.cka)], ["neuron candidate", get((s) => s.neuron_candidate && s.neuron_candidate.cka)]]
        : [["dropped block", get((s) => s.cka)]];
      addChart(box, "chart-cka", "CKA to the parent", x, cka);
      addChart(box, "chart-macs", "MACs removed (%)", x, [["MACs", get((s) => 100 * s.macs_reduction)]]);
      if (its.some((s) => s.accuracy !== undefined)) addChart(box, "chart-accuracy", "top-1 accuracy (%)", x, [["accuracy", get((s) => s.accuracy !== undefined ? 100 * s.accuracy : null)]]);
      if (its.some((s) => s.latency_s !== undefined)) addChart(box, "chart-latency", "latency (ms)", x, [["latency", get((s) => s.latency_s && 1e3 * s.latency_s)]]);
      if (P.method === "everything") {
        const t = el("table", { class: "rows", id: "iterations-table" });
        t.append(trOf(["th", "iteration", "choice", "CKA layer", "CKA neurons", "MACs removed", "accuracy"]));
        for (const s of its) t.append(trOf(["td", s.iteration, s.choice, fmt(s.layer_candidate && s.layer_candidate.cka), fmt(s.neuron_candidate && s.neuron_candidate.cka), pct(s.macs_reduction), s.accuracy === undefined ? "–" : pct(s.accuracy)]));
        box.append(t);
      }
      if (!its.some((s) => s.accuracy !== undefined)) box.append(el("p", { class: "note" }, "accuracy: pass --eval DATA (everything-at-once measures it every iteration)"));
    }
  }
  const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(4));
  function trOf(cells) {
    const tr = el("tr");
    for (const c of cells.slice(1)) tr.append(el(cells[0], {}, c === null || c === undefined ? "–" : String(c)));
    return tr;
  }
  const charts = [];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  function addChart(box, id, title, x, series) {
    const d = el("div", { id, class: "chart" });
    box.append(d);
    charts.push(() => new uPlot({
      title, width: 420, height: 200, scales: { x: { time: false } },
      series: [{ label: "iteration" }, ...series.map(([label], k) => ({ label, stroke: COLORS[k], width: 2, points: { show: true } }))],
    }, [x, ...series.map(([, ys]) => ys)], d));
  }
  function barChart(d, ws) {
    const x = ws.map((_, i) => i);
    const bars = uPlot.paths.bars({ size: [0.8] });
    return new uPlot({
      title: "output features per layer (before, after)", width: 420, height: 200,
      scales: { x: { time: false } }, axes: [{ label: "layer (graph order)" }, {}],
      series: [{ label: "layer" }, { label: "before", fill: "#cfd8e3", stroke: "#8899aa", paths: bars },
        { label: "after", fill: "#1f77b4", stroke: "#1f77b4", paths: bars }],
    }, [x, ws.map((w) => w.out_before), ws.map((w) => (w.out_after === null ? 0 : w.out_after))], d);
  }

  // ---- tabs and start ---------------------------------------------------------------------
  function showTab(name) {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
    document.querySelectorAll(".panel").forEach((p) => (p.hidden = p.id !== "tab-" + name));
    if (name === "prune") while (charts.length) charts.shift()();  // uPlot measures a visible box
  }
  function start() {
    const t0 = performance.now();
    $("#model-name").textContent = D.model;
    $("#totals").textContent = `${human(D.total.macs)} MACs · ${human(D.total.params)} params · ${D.total.nodes} nodes`;
    $("#group-count").textContent = D.groups.length;
    $("#prunable-count").textContent = D.groups.filter((g) => g.prunable).length;
    $("#block-count").textContent = D.blocks.length;
    $("#removable-count").textContent = D.blocks.filter((b) => b.removable).length;
    $("#tab-groups").append(groupsTable());
    $("#tab-blocks").append(blocksTable());
    if (D.prune) prunePanel(); else $('.tab[data-tab="prune"]').hidden = true;
    document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
    $("#fit").onclick = fit;
    $("#expand-all").onclick = () => {
      D.blocks.forEach((b) => S.expanded.add(b.id)); D.scopes.forEach((c) => S.openScopes.add(c.id));
      D.runs.forEach((r) => S.openRuns.add(r.id)); draw(); fit();
    };
    $("#collapse-all").onclick = () => { S.expanded.clear(); S.openScopes.clear(); S.openRuns.clear(); draw(); fit(); };
    $("#heat").onchange = (e) => { S.heat = e.target.value; draw(); };
    $("#plumbing").onchange = (e) => { S.showPlumbing = e.target.checked; draw(); fit(); };
    $("#plumbing-count").textContent = D.nodes.filter((n) => n.plumbing).length;
    $("#search").onchange = (e) => search(e.target.value);
    setupPanZoom();
    draw();
    fit();
    showTab(D.prune ? "prune" : "groups");
    // What the browser test reads: the page is drawn, and how long it took.
    window.onnxprune = { ready: true, renderMs: performance.now() - t0, select, expandAll: () => $("#expand-all").click(),
      maxUnits: (n) => { MAX_UNITS = n; } };
    document.body.dataset.ready = "1";
  }
  start();
})();
