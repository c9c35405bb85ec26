"""When a search stops: a fraction of MACs or parameters removed, or a number of blocks."""

from __future__ import annotations

from dataclasses import dataclass

from onnxprune.errors import OnnxPruneError


@dataclass
class Target:
    """When to stop: a fraction of MACs or params removed, or a number of blocks."""

    flops: float | None = None
    params: float | None = None
    blocks: int | None = None

    def check(self) -> None:
        for name in ("flops", "params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise OnnxPruneError(f"--target-{name} is the fraction to remove, in (0, 1): got {value}")
        if self.blocks is not None and self.blocks < 1:
            raise OnnxPruneError(f"--target-blocks must be at least 1, got {self.blocks}")
        if self.flops is None and self.params is None and self.blocks is None:
            raise OnnxPruneError("give a target: --target-flops R, --target-params R or --target-blocks N")

    def reached(self, macs_cut: float, params_cut: float, dropped: int) -> bool:
        return (
            (self.flops is not None and macs_cut >= self.flops - 1e-12)
            or (self.params is not None and params_cut >= self.params - 1e-12)
            or (self.blocks is not None and dropped >= self.blocks)
        )
