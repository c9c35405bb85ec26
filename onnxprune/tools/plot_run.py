"""A PNG of an everything-at-once (or layers) run: both candidates' CKA to the parent
and the model's MACs against iteration. Needs matplotlib (`pip install onnxprune[plot]`)."""

from __future__ import annotations

from onnxprune.errors import OnnxPruneError


def plot_run(report: dict, path: str) -> None:
    """Write the plot to `path` (the CLI stages it with the other outputs)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise OnnxPruneError("--plot needs matplotlib: pip install onnxprune[plot]") from err
    steps = report.get("iterations", [])
    if not steps:
        raise OnnxPruneError("--plot: the run made no iteration, nothing to plot")
    it = [s["iteration"] for s in steps]

    def cka(step, key):
        cand = step.get(key)
        return None if not cand else cand.get("cka")

    layer = [cka(s, "layer_candidate") if "layer_candidate" in s else s.get("cka") for s in steps]
    neuron = [cka(s, "neuron_candidate") for s in steps]
    macs = [s.get("macs", s.get("macs_after")) for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(it, [v if v is not None else float("nan") for v in layer], "o-", label="layer candidate CKA")
    if any(v is not None for v in neuron):
        ax.plot(it, [v if v is not None else float("nan") for v in neuron], "s-", label="neuron candidate CKA")
    chosen = [s.get("choice") for s in steps]
    for i, c in zip(it, chosen):
        if c:
            ax.axvline(i, color="tab:green" if c == "layer" else "tab:orange", alpha=0.08)
    ax.set_xlabel("iteration")
    ax.set_ylabel("linear CKA to the parent")
    ax2 = ax.twinx()
    before = report["cost"]["before"]["macs"]
    ax2.plot(it, [m / 1e6 for m in macs], "k--", label="MACs")
    ax2.axhline(before / 1e6, color="grey", lw=0.5)
    ax2.set_ylabel("MACs (M)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left", fontsize=8)
    ax.set_title(f"{report['settings'].get('method')}: MACs −{100 * report['cost']['macs_reduction']:.1f} %")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120, format="png")
    finally:
        plt.close(fig)
