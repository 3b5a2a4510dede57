"""events.jsonl: one JSON object per line, appended and flushed as it happens.

Types (docs/training.md, "The run folder"): ``step`` (step, epoch, loss, lr, it_s, time, ...),
``sample`` (step, prompt, path), ``checkpoint`` (step, path),
``status`` (state: running|finished|stopped|failed, error), plus ``val``
(step, val_loss) and ``gpu`` (mem_gb, util) which readers may ignore.

Readers tail the file by byte offset and tolerate a half-written last line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATES = ("starting", "running", "finished", "stopped", "failed")


class EventWriter:
    """Appends events; each line is written with one write() and flushed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, **fields}
        event.setdefault("time", time.time())
        self._fh.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._fh.flush()
        return event

    def step(self, step: int, epoch: int, loss: float, lr: float, it_s: float, **extra: Any) -> None:
        self.emit("step", step=step, epoch=epoch, loss=loss, lr=lr, it_s=it_s, **extra)

    def sample(self, step: int, prompt: str, path: str, **extra: Any) -> None:
        self.emit("sample", step=step, prompt=prompt, path=path, **extra)

    def checkpoint(self, step: int, path: str, **extra: Any) -> None:
        self.emit("checkpoint", step=step, path=path, **extra)

    def status(self, state: str, error: str | None = None, **extra: Any) -> None:
        if error is not None:
            extra["error"] = error
        self.emit("status", state=state, **extra)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            os.fsync(self._fh.fileno())
        except OSError:
            pass
        self._fh.close()


class EventTail:
    """Reads only the new complete lines of a growing events.jsonl.

    ``poll()`` returns the events appended since the last call. A partial last
    line is left for the next poll; a corrupt complete line is skipped and
    counted in ``bad_lines``. If the file shrinks (replaced), it starts over.
    """

    def __init__(self, path: Path, max_bytes: int = 8 << 20) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0
        self.max_bytes = max_bytes  # backpressure: at most this much per poll
        self.restarts = 0  # times the file was replaced or truncated and read again from the start
        self.size = 0  # file size at the last poll: ``size > offset`` means more is waiting
        self._ino: int | None = None

    def poll(self) -> list[dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset = 0
            self.restarts += 1
        self._ino = st.st_ino
        self.size = st.st_size
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            # Never ask read() for more than is there: a huge max_bytes would be allocated up front.
            chunk = fh.read(min(self.max_bytes, st.st_size - self.offset))
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        complete = chunk[: end + 1]
        self.offset += len(complete)
        return list(self._parse(complete))

    def _parse(self, data: bytes) -> Iterator[dict[str, Any]]:
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(obj, dict) and "type" in obj:
                yield obj
            else:
                self.bad_lines += 1


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events in a file (a convenience over EventTail)."""
    tail = EventTail(path, max_bytes=1 << 62)
    return tail.poll()
