"""A one-line progress bar on a terminal; log lines otherwise (searches report each step)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("onnxprune")


class Progress:
    def __init__(self, total: int | None, enabled: bool | None = None):
        self.total = total
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.step = 0  # the last step shown

    def update(self, step: int, text: str) -> None:
        self.step = step
        if self.tty:
            width = 24
            done = width if not self.total else min(width, round(width * step / self.total))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}\033[K")
            sys.stderr.flush()
        log.info(text)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
