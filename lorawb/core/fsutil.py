"""Atomic writes and tolerant text reading, shared by every module that touches files.

Caption and config files may come from any tool: UTF-8 with or without BOM,
UTF-16 with BOM, CRLF line ends, or a legacy 8-bit encoding. We read them all,
remember how they were written, and write back UTF-8 with the same newline style.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lorawb.errors import LorawbError


@dataclass(frozen=True)
class TextFile:
    """A text file as read: its text (newlines normalised to \\n) and how it was stored."""

    text: str
    encoding: str  # "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"
    newline: str  # "\n" or "\r\n" (or "\r")
    mtime_ns: int
    size: int

    @property
    def lossy(self) -> bool:
        """True when the file was not UTF-8 (worth reporting: it will be rewritten as UTF-8)."""
        return self.encoding not in ("utf-8", "utf-8-sig")


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode bytes from an unknown source; returns (text, encoding). Never raises."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def detect_newline(text: str) -> str:
    if "\r\n" in text:
        return "\r\n"
    if "\r" in text:
        return "\r"
    return "\n"


def read_text(path: Path) -> TextFile:
    """Read a text file of unknown encoding. Raises LorawbError (not OSError) on failure."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise LorawbError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    text, encoding = decode_bytes(data)
    newline = detect_newline(text)
    if newline != "\n":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return TextFile(text=text, encoding=encoding, newline=newline, mtime_ns=st.st_mtime_ns, size=st.st_size)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + fsync + rename: a reader never sees half a file.

    On a full disk the original file is left untouched and a LorawbError says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if exc.errno == errno.ENOSPC:
            raise LorawbError(
                "disk full: nothing was written, the original is unchanged",
                path=path,
                hint="free some space and try again",
            ) from exc
        raise LorawbError(f"cannot write file: {exc.strerror or exc}", path=path) from exc


def atomic_write_text(path: Path, text: str, newline: str = "\n") -> None:
    """Write text as UTF-8 atomically; ``text`` uses \\n and is converted to ``newline``."""
    if newline != "\n":
        text = text.replace("\n", newline)
    atomic_write_bytes(path, text.encode("utf-8"))
