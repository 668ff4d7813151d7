"""Progress of long work: tqdm bars on a terminal, plain lines with an ETA in a log.

Without a terminal (CI, nohup, Slurm logs) a bar would print nothing useful, so `Progress` writes a
line to stderr for every finished fit, and for cells every `every` of them (about 20 lines a
phase) plus the last: `pixel cells: 40/165 done (1 failed), 1m12s elapsed, ETA 3m45s`. The ETA is
the mean time per finished item so far times the items left. `quiet` silences both.
"""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, total: int, desc: str, quiet: bool = False, unit: str = "cell", stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.start = time.perf_counter()
        terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self.lines = not quiet and not terminal
        if not quiet and terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, unit=unit, file=self.stream)
        self.every = 1 if unit == "fit" else max(1, total // 20)

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        if self.bar is not None:
            self.bar.update(n)
        if self.lines and n and (self.done % self.every == 0 or self.done >= self.total
                                 or self.done // self.every != (self.done - n) // self.every):
            elapsed = time.perf_counter() - self.start
            left = self.total - self.done
            eta = f", ETA {_clock(elapsed / self.done * left)}" if left and self.done else ""
            failed = f" ({self.failed} failed)" if self.failed else ""
            print(f"{self.desc}: {self.done}/{self.total} done{failed}, {_clock(elapsed)} elapsed{eta}",
                  file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A short status beside the bar (e.g. how many jobs run); lines leave it out."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["Progress"]
