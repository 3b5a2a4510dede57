"""Atomic writes and tolerant text reading, shared by every module that touches files.

Caption and config files may come from any tool: UTF-8 with or without BOM,
UTF-16 with BOM, CRLF line ends, or a legacy 8-bit encoding. We read them all,
remember how they were written, and write them back the same way (``encode_text``):
the same encoding marker (BOM), the same encoding where it can hold the new text
(else UTF-8), the same newline style.
"""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lorawb.core import ownwrites
from lorawb.errors import LorawbError


@dataclass(frozen=True)
class TextFile:
    """A text file as read: its text (newlines normalised to \\n) and how it was stored."""

    text: str
    encoding: str  # "utf-8", "utf-8-sig", "utf-16" (little-endian BOM), "utf-16-be", "cp1252", "latin-1"
    newline: str  # "\n" or "\r\n" (or "\r")
    mtime_ns: int
    size: int

    @property
    def lossy(self) -> bool:
        """True when the file is not UTF-8 (worth reporting: kohya's trainer reads captions as UTF-8)."""
        return self.encoding not in ("utf-8", "utf-8-sig")


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode bytes from an unknown source; returns (text, encoding). Never raises."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace"), "utf-16"
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace"), "utf-16-be"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-be", "cp1252", "latin-1")


def can_encode(text: str, encoding: str) -> bool:
    """True when ``text`` can be written in ``encoding`` as read by ``decode_bytes`` (UTF-8/16 hold anything)."""
    if encoding not in ("cp1252", "latin-1"):
        return True
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def encode_text(text: str, encoding: str = "utf-8", newline: str = "\n") -> bytes:
    """Text (newlines as \\n) to bytes the way its file was stored: encoding marker (BOM), encoding, newlines.

    A legacy 8-bit file (cp1252, latin-1) whose new text it cannot hold is written as UTF-8
    (``can_encode`` tells beforehand); an unknown encoding name is written as UTF-8 too.
    """
    if newline != "\n":
        text = text.replace("\n", newline)
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if encoding == "utf-16":
        return b"\xff\xfe" + text.encode("utf-16-le", errors="surrogatepass")
    if encoding == "utf-16-be":
        return b"\xfe\xff" + text.encode("utf-16-be", errors="surrogatepass")
    if encoding in ("cp1252", "latin-1") and can_encode(text, encoding):
        return text.encode(encoding)
    return text.encode("utf-8", errors="surrogatepass")


def detect_newline(text: str) -> str:
    if "\r\n" in text:
        return "\r\n"
    if "\r" in text:
        return "\r"
    return "\n"


def read_text(path: Path) -> TextFile:
    """Read a text file of unknown encoding. Raises LorawbError (not OSError) on failure."""
    try:
        # One open: the mtime/size come from the same file object the bytes are read from
        # (the caption engine's conflict checks rely on it), and it is cheap for 10,000 files.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            chunks = []
            while True:
                chunk = os.read(fd, max(st.st_size + 1, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
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
    with ownwrites.writing([path]):
        _atomic_write_bytes(path, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
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


_CHUNK = 128  # temp files open at once in atomic_write_many (well under the usual 1024 fd limit)


def _open_temp(path: Path) -> tuple[str, int]:
    """A new temp file beside ``path`` (hidden, exclusive): cheaper than tempfile.mkstemp in bulk."""
    base = os.fspath(path)
    d, name = os.path.split(base)
    for _ in range(100):
        tmp = os.path.join(d, f".{name}.{os.getpid()}.{next(_temp_counter)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot make a temp file", base)


_temp_counter = itertools.count()


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write_many(
    items: Sequence[tuple[Path, bytes]],
    *,
    before_replace: Callable[[int], bool] | None = None,
    errors: dict[int, str] | None = None,
    workers: int = 32,
) -> dict[int, os.stat_result]:
    """Write many files, each atomically (temp file + fsync + rename), fast enough for 10,000 captions.

    The temp files are written, then fsynced together by a thread pool (the file system batches
    concurrent fsyncs into one journal commit, where one fsync per file in turn costs ~0.3 ms
    each), then renamed over their targets in order. ``before_replace(i)`` is called just before item ``i``
    replaces its target; returning False skips it (its temp file is removed): the caller's
    last-moment conflict check. Returns {index: stat of the file written} (a rename keeps the
    temp file's mtime, so these are the files' stats now, for later conflict checks). A temp file that cannot be written
    raises LorawbError before anything is renamed; a rename that fails raises too, unless
    ``errors`` is given: then the reason is stored there under the item's index and the rest go on.
    """
    # The watcher tells these writes from other programs' (lorawb.core.ownwrites).
    with ownwrites.writing([path for path, _ in items]):
        return _atomic_write_many(items, before_replace, errors, workers)


def _atomic_write_many(
    items: Sequence[tuple[Path, bytes]],
    before_replace: Callable[[int], bool] | None,
    errors: dict[int, str] | None,
    workers: int,
) -> dict[int, os.stat_result]:
    temps: list[str | None] = [None] * len(items)
    stats: list[os.stat_result | None] = [None] * len(items)

    def cleanup() -> None:
        for tmp in temps:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    try:
        made: set[Path] = set()
        for path, _ in items:
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
        # Temp files are written in chunks; each chunk's fsyncs run together in a thread pool, so
        # the file system commits them in a few journal transactions instead of one per file.
        pool = ThreadPoolExecutor(max_workers=workers) if len(items) > 1 and workers > 1 else None
        try:
            for start in range(0, len(items), _CHUNK):
                fds: list[int] = []
                try:
                    for i in range(start, min(len(items), start + _CHUNK)):
                        path, data = items[i]
                        tmp, fd = _open_temp(path)
                        temps[i] = tmp
                        fds.append(fd)
                        _write_all(fd, data)
                        try:
                            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
                        except FileNotFoundError:
                            os.fchmod(fd, 0o644)
                    if pool is not None:
                        step = max(1, len(fds) // workers)
                        list(pool.map(_fsync_all, [fds[k : k + step] for k in range(0, len(fds), step)]))
                    else:
                        _fsync_all(fds)
                    for k, fd in enumerate(fds):
                        stats[start + k] = os.fstat(fd)
                finally:
                    for fd in fds:
                        os.close(fd)
        finally:
            if pool is not None:
                pool.shutdown()
    except OSError as exc:
        cleanup()
        failed = Path(exc.filename) if getattr(exc, "filename", None) else None
        if exc.errno == errno.ENOSPC:
            raise LorawbError(
                "disk full: nothing was written, the originals are unchanged",
                path=failed,
                hint="free some space and try again",
            ) from exc
        raise LorawbError(f"cannot write file: {exc.strerror or exc}; nothing was written", path=failed) from exc
    done: dict[int, os.stat_result] = {}
    dirs: set[Path] = set()
    for i, (path, _) in enumerate(items):
        tmp = temps[i]
        try:
            if before_replace is not None and not before_replace(i):
                os.unlink(tmp)  # type: ignore[arg-type]
            else:
                os.replace(tmp, path)  # type: ignore[arg-type]
                done[i] = stats[i]  # type: ignore[assignment]
                dirs.add(path.parent)
            temps[i] = None
        except OSError as exc:
            if errors is not None:  # the caller reports it with the others and goes on
                errors[i] = f"cannot write: {exc.strerror or exc}"
                try:
                    os.unlink(tmp)  # type: ignore[arg-type]
                except OSError:
                    pass
                temps[i] = None
                continue
            cleanup()
            written = f"; {len(done)} file(s) before it were written" if done else "; nothing was written"
            raise LorawbError(f"cannot write file: {exc.strerror or exc}{written}", path=path) from exc
    for d in dirs:  # make the renames themselves durable
        try:
            dfd = os.open(d, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
    return done
