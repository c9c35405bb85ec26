"""Plain-text rendering of `pipeline.inspect` results for people at a terminal."""

from __future__ import annotations


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def render(info: dict, *, show_nodes: bool = True) -> str:
    lines = []
    total = info["total"]
    shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in info["input_shapes"].items())
    lines.append(f"inputs: {shapes}")
    lines.append(
        f"total: {human(total['macs'])} MACs, {human(total['params'])} params, {total['nodes']} nodes"
    )
    groups = info["groups"]
    prunable = [g for g in groups if g["prunable"]]
    lines.append(f"channel groups: {len(groups)} ({len(prunable)} prunable, {len(groups) - len(prunable)} frozen)")
    for kind in ("heads", "hidden", "channels"):
        of_kind = [g for g in groups if g.get("kind") == kind]
        if of_kind:
            sizes = ", ".join(f"{g['size']}{'' if g['prunable'] else '*'}" for g in of_kind)
            lines.append(f"  {kind:<8} per group: {sizes}   (* frozen)")
    lines.append("")
    lines.append(f"{'group':>5} {'kind':<8} {'size':>5} {'prun.':>5} {'exact':>5} {'MACs/ch':>10} {'params/ch':>9}  source / why frozen")
    for g in groups:
        why = "; ".join(g["frozen_reasons"][:2])
        src = g["sources"][0] if g["sources"] else "-"
        more = f" +{len(g['sources']) - 1}" if len(g["sources"]) > 1 else ""
        note = f"{src}{more}" + (f"  [frozen: {why}]" if why else "")
        lines.append(
            f"{g['id']:>5} {g.get('kind', ''):<8} {g['size']:>5} {g['prunable']:>5} {'yes' if g['exact'] else 'no':>5} "
            f"{human(g['macs_per_channel']):>10} {human(g['params_per_channel']):>9}  {note}"
        )
    if show_nodes:
        lines.append("")
        lines.append(f"{'node':<40} {'op':<22} {'MACs':>10} {'params':>9}")
        for n in info["nodes"]:
            if n["macs"] or n["params"]:
                lines.append(f"{n['name'][:40]:<40} {n['op_type']:<22} {human(n['macs']):>10} {human(n['params']):>9}")
    return "\n".join(lines)
