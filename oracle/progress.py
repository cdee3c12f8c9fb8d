"""A progress bar on stderr, drawn only for a terminal (CI logs and pipes stay clean)."""

from __future__ import annotations

import shutil
import sys
import time

BAR = 30  # characters of the bar itself


def line_width() -> int:
    """Characters a line may hold: one less than the terminal's columns (COLUMNS if set), so it never wraps."""
    return max(shutil.get_terminal_size(fallback=(80, 24)).columns - 1, 1)


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None):
        self.total, self.label, self.done, self.start = total, label, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled

    def step(self, what: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = BAR * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (BAR - filled)
        head = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s "
        width = line_width()
        # the case name is cut to what fits; padding wipes a longer previous line
        self.stream.write("\r" + (head + what)[:width].ljust(width))
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
