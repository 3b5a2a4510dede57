"""events.jsonl: one JSON object per line, appended and flushed as it happens.

Types (docs/training.md, "The run folder"): ``step`` (step, epoch, loss, lr, it_s, time, ...),
``sample`` (step, prompt, path), ``checkpoint`` (step, path),
``status`` (state: running|finished|stopped|failed, error), plus ``val``
(step, val_loss), ``gpu`` (mem_gb, util) and ``skipped`` (images: [{path, reason}],
the dataset images the run could not use) which readers may ignore.

Readers tail the file by byte offset and tolerate a half-written last line; a line that is not
an event (``event_problem``) is skipped and named, never fatal. What the events of a run add up
to is lorawb.train.runstate's one fold.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
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


# The fields readers rely on, and what each must hold for a line to count as an event.
WHOLE_FIELDS = ("step", "epoch", "max_steps", "index", "resumed_from", "total", "done", "pending")  # counts
NUMBER_FIELDS = ("time", "loss", "lr", "it_s", "val_loss", "mem_gb", "util", "cfg", "seconds_per_image")
TEXT_FIELDS = ("path", "prompt", "state", "error", "hint")
MAX_WHOLE = 2**53  # JSON's exact integers; a larger step is not one a trainer wrote
NAMED_PROBLEMS = 5  # malformed lines named one by one; the rest are counted


def event_problem(obj: Any) -> str | None:
    """Why a parsed line is not an event a reader can use (None when it is): the schema of
    events.jsonl that every reader of a job's events (runs, watch, the Train tab, matrices) relies on.

    An event is a JSON object with a ``type``; the fields above, when present and not null, hold
    what they say (a step is a whole number from 0 to 2^53, a loss a finite number, a state one of
    STATES); no number anywhere is inf or nan.
    """
    if not isinstance(obj, dict):
        return "not a JSON object"
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        return "no event type"
    for key, value in obj.items():  # one pass: a reader folds 100,000 events at start
        if value is None:
            continue
        rule = _RULES.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value}, not a finite number"
        if rule is None:
            continue
        if rule == "whole":
            if type(value) is not int or not 0 <= value <= MAX_WHOLE:
                return f"{key} is {_shown(value)}, not a whole number from 0 to 2^53"
        elif rule == "number":
            if type(value) not in (int, float) or abs(value) > 1e300:
                return f"{key} is {_shown(value)}, not a number"
        elif type(value) is not str:
            return f"{key} is {_shown(value)}, not text"
    if kind == "status" and obj.get("state") not in STATES:
        return f"state is {_shown(obj.get('state'))}, not one of {', '.join(STATES)}"
    return None


_RULES = {
    **dict.fromkeys(WHOLE_FIELDS, "whole"),
    **dict.fromkeys(NUMBER_FIELDS, "number"),
    **dict.fromkeys(TEXT_FIELDS, "text"),
}


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


class EventTail:
    """Reads only the new complete lines of a growing events.jsonl.

    ``poll()`` returns the events appended since the last call. A partial last line is left for
    the next poll (``unfinished`` bytes); a line that is not an event (not JSON, no type, or
    failing ``check``, e.g. :func:`event_problem`) is skipped, counted in ``bad_lines`` and, for
    the first few, named in ``problems`` (``line 7: step is "abc", ...``). A line longer than
    ``max_bytes`` is skipped too (it never holds an event). If the file shrinks (replaced), it
    starts over. ``more``: the last poll stopped at ``max_bytes`` with complete lines still waiting.
    """

    def __init__(self, path: Path, max_bytes: int = 8 << 20, check: Callable[[Any], str | None] | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes  # backpressure: at most this much per poll
        self.check = check
        self.restarts = 0  # times the file was replaced or truncated and read again from the start
        self.size = 0  # file size at the last poll
        self._ino: int | None = None
        self._start()

    def _start(self) -> None:
        self.offset = 0
        self.line = 0  # complete lines read so far (the next one is line + 1)
        self.bad_lines = 0
        self.problems: list[str] = []
        self.more = False
        self._skipping = False  # inside a line longer than max_bytes

    @property
    def unfinished(self) -> int:
        """Bytes after the last complete line, once everything else is read: a half-written last
        line (a writer caught mid-line, or one killed there)."""
        return 0 if self.more else max(0, self.size - self.offset)

    def poll(self) -> list[dict[str, Any]]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self._start()
            self.restarts += 1
        self._ino = st.st_ino
        self.size = st.st_size
        if st.st_size == self.offset:
            self.more = False
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            # Never ask read() for more than is there: a huge max_bytes would be allocated up front.
            chunk = fh.read(min(self.max_bytes, st.st_size - self.offset))
        self.more = self.offset + len(chunk) < st.st_size
        at_line_start = True
        if self._skipping:
            end_of_long = chunk.find(b"\n")
            if end_of_long < 0:
                self.offset += len(chunk)
                return []
            self.offset += end_of_long + 1
            chunk = chunk[end_of_long + 1 :]
            self._skipping, at_line_start = False, False
        end = chunk.rfind(b"\n")
        if end < 0:
            if self.more and at_line_start:  # a line longer than a whole read: skip to its end
                self._bad(f"longer than {self.max_bytes} bytes")
                self._skipping = True
                self.offset += len(chunk)
            return []
        complete = chunk[: end + 1]
        self.offset += len(complete)
        return list(self._parse(complete))

    def _bad(self, why: str) -> None:
        self.line += 1
        self.bad_lines += 1
        if len(self.problems) < NAMED_PROBLEMS:
            self.problems.append(f"line {self.line}: {why}")

    def _parse(self, data: bytes) -> Iterator[dict[str, Any]]:
        for line in data.splitlines():
            if not line.strip():
                self.line += 1
                continue
            try:
                obj = json.loads(line)
            except ValueError:  # not JSON, bad UTF-8, an integer of thousands of digits
                self._bad("not JSON")
                continue
            if self.check is not None:
                why = self.check(obj)
            else:
                why = None if isinstance(obj, dict) and "type" in obj else "not an event (a JSON object with a type)"
            if why is not None:
                self._bad(why)
                continue
            self.line += 1
            yield obj


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events in a file that pass :func:`event_problem` (a convenience over EventTail)."""
    tail = EventTail(path, max_bytes=1 << 62, check=event_problem)
    return tail.poll()
