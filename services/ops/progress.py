"""A one-line live progress display (rewritten in place on a terminal, periodic lines otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = 0.0 if self._tty else every_s
        self._last = 0.0

    def update(self, line: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (self._every or 0.2):
            return
        self._last = now
        if self._tty:
            self._stream.write("\r\x1b[2K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self, line: str) -> None:
        self.update(line, force=True)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
