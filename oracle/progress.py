"""A progress bar on stderr, drawn only for a terminal (CI logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None):
        self.total, self.label, self.done, self.start = total, label, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled

    def step(self, what: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (width - filled)
        line = f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {what}"
        self.stream.write(line[:120].ljust(120))
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
