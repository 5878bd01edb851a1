"""A stage's progress on the driver's terminal or log, read from its metric history file."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


class Progress:
    """Progress of a stage, fed by its metric history file (written by the Train callback): a bar
    with the ETA in a terminal; elsewhere (submit logs, CI, pods) a plain line every
    ``PLAIN_EVERY_S`` seconds, so long cluster jobs stay visible."""

    PLAIN_EVERY_S = 30.0

    def __init__(self, path: Path, name: str, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.path, self.name, self.total, self._stop = path, name, total, threading.Event()
        self.tty, self.t0, self._last_plain = sys.stdout.isatty(), time.monotonic(), time.monotonic()
        self._first: tuple[float, int] | None = None
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}")]
        self.bar = Progress(*columns, TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
        self.task = self.bar.add_task(f"stage {name}", total=total, info="starting workers")
        if self.tty:
            self.bar.start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _refresh(self, force_plain: bool = False) -> None:
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        last = json.loads(lines[-1]) if lines else {}
        step = last.get("step", 0)
        info = f"loss {last.get('loss', float('nan')):.4f}  {last.get('img_per_s_total', 0):.0f} img/s" if last else ""
        self.bar.update(self.task, completed=step, info=info or "starting workers")
        now = time.monotonic()
        if step and self._first is None:
            self._first = (now, step)  # the rate counts from the first step seen, not from start-up
        if not self.tty and (force_plain or now - self._last_plain >= self.PLAIN_EVERY_S):
            self._last_plain, elapsed = now, now - self.t0
            t1, s1 = self._first or (now, step)
            eta = f", eta {(now - t1) / (step - s1) * (self.total - step):.0f}s" if step > s1 else ""
            print(f"stage {self.name}: step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%)"
                  f"{', ' + info if info else ''}, {elapsed:.0f}s{eta}", flush=True)  # fmt: skip

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self._refresh(force_plain=True)
        if self.tty:
            self.bar.stop()
