"""Atomic writes and tolerant text reading, shared by every module that touches files.

Caption and config files may come from any tool: UTF-8 with or without BOM,
UTF-16 with BOM, CRLF line ends, or a legacy 8-bit encoding. We read them all,
remember how they were written, and write them back the same way (``encode_text``):
the same encoding marker (BOM), the same encoding where it can hold the new text
(else UTF-8), the same newline style.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import itertools
import os
import queue
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lorawb.core import ownwrites
from lorawb.errors import LorawbError
from lorawb.words import size_text


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


TEXT_LIMIT = 16 * 1024 * 1024  # what ``read_text`` reads at most unless told otherwise (settings, prompt lists)


class TooLargeError(LorawbError):
    """A text file is over the size its reader accepts; nothing past the limit was read."""


def read_text(path: Path, limit: int | None = TEXT_LIMIT) -> TextFile:
    """Read a text file of unknown encoding. Raises LorawbError (not OSError) on failure.

    A file over ``limit`` bytes raises ``TooLargeError`` having read at most ``limit + 1``
    bytes of it: a 50 MB "caption" never reaches memory (None: no limit).
    """
    try:
        # One open: the mtime/size come from the same file object the bytes are read from
        # (the caption engine's conflict checks rely on it), and it is cheap for 10,000 files.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if limit is not None and st.st_size > limit:
                raise TooLargeError(
                    f"the file is {size_text(st.st_size)}, over the {size_text(limit)} this reader accepts; not read",
                    path=path,
                    hint="is it really a text file? shorten it, or move it out of the project",
                )
            budget = None if limit is None else limit + 1
            chunks = []
            while budget is None or budget > 0:
                want = max(st.st_size + 1, 65536) if budget is None else min(max(st.st_size + 1, 65536), budget)
                chunk = os.read(fd, want)
                if not chunk:
                    break
                chunks.append(chunk)
                if budget is not None:
                    budget -= len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LorawbError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if limit is not None and len(data) > limit:  # it grew while we read it
        raise TooLargeError(f"the file is over the {size_text(limit)} this reader accepts; not read", path=path)
    text, encoding = decode_bytes(data)
    newline = detect_newline(text)
    if newline != "\n":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return TextFile(text=text, encoding=encoding, newline=newline, mtime_ns=st.st_mtime_ns, size=st.st_size)


def atomic_write_bytes(path: Path, data: bytes, *, tag: str | None = None, replace: bool = True) -> None:
    """Write via a temp file in the same folder + fsync + rename: a reader never sees half a file.

    On a full disk the original file is left untouched and a LorawbError says so. ``tag`` marks
    the temp file as a journaled change's (``remove_leftovers``); ``replace=False`` never
    replaces an existing file (FileExistsError; the temp file is removed).
    """
    path = Path(path)
    with ownwrites.writing([path]):
        _atomic_write_bytes(path, data, tag, replace)


def _atomic_write_bytes(path: Path, data: bytes, tag: str | None, replace: bool) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _open_temp(path, tag)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when the file exists: never over another file
            os.unlink(tmp)
    except OSError as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, FileExistsError) and not replace:
            raise
        raise write_error(exc, path, "nothing was written, the original is unchanged") from exc


def write_error(exc: OSError, path: Path | None, done: str = "nothing was written") -> LorawbError:
    """The LorawbError for a write that failed: a full disk, a read-only folder, or the system's reason.

    ``done`` says what the failure left (``nothing was written``, ``3 files before it were written``).
    """
    where = Path(exc.filename) if getattr(exc, "filename", None) else path
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return LorawbError(f"disk full: {done}", path=where, hint="free some space and try again")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        folder = where.parent if where is not None else None
        why = "the file system is read-only" if exc.errno == errno.EROFS else "no permission to write there"
        return LorawbError(
            f"cannot write in {folder or 'this folder'}: {why}; {done}",
            path=where,
            hint="make the folder writable (chmod u+w, or mount it read-write) and try again",
        )
    return LorawbError(f"cannot write file: {exc.strerror or exc}; {done}", path=where)


def atomic_write_text(path: Path, text: str, newline: str = "\n") -> None:
    """Write text as UTF-8 atomically; ``text`` uses \\n and is converted to ``newline``."""
    if newline != "\n":
        text = text.replace("\n", newline)
    atomic_write_bytes(path, text.encode("utf-8"))


_WRITERS = (
    16  # threads creating temp files: each create waits on the file system's journal, in parallel the waits overlap
)


TEMP_PREFIX = ".lwb-"  # every temp file lorawb makes beside a file: hidden, short, whatever the file's name
_PROCESS_TAG = secrets.token_hex(4)  # this process's temp files, when no journaled change names them


def new_tag() -> str:
    """A fresh mark for one journaled change's temp files (8 hex digits)."""
    return secrets.token_hex(4)


def _temp_name(path: str, kind: str, tag: str | None = None) -> str:
    # ``.lwb-<tag>-<n>.tmp``: ~20 characters, so a 250-byte file name still gets a temp file (a name
    # built from the file's own name would pass the 255-byte limit), and a journaled change's leftovers
    # are found by its tag alone.
    d = os.path.dirname(path)
    return os.path.join(d, f"{TEMP_PREFIX}{tag or _PROCESS_TAG}-{next(_temp_counter):x}.{kind}")


def temp_name(path: Path | str, tag: str | None = None) -> Path:
    """A temp file name beside ``path`` (not created): hidden, short, marked with ``tag``."""
    return Path(_temp_name(os.fspath(path), "tmp", tag))


def _open_temp(path: Path | str, tag: str | None = None) -> tuple[str, int]:
    """A new temp file beside ``path`` (hidden, exclusive): cheaper than tempfile.mkstemp in bulk."""
    base = os.fspath(path)
    for _ in range(100):
        tmp = _temp_name(base, "tmp", tag)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot make a temp file", base)


_temp_counter = itertools.count()


def remove_leftovers(folders: Iterable[Path | str], tag: str) -> int:
    """Remove the temp files and kept old versions a killed write tagged ``tag`` left in these folders."""
    prefix = f"{TEMP_PREFIX}{tag}-"
    removed = 0
    for d in dict.fromkeys(os.fspath(f) for f in folders):
        try:
            names = [n for n in os.listdir(d) if n.startswith(prefix)]
        except OSError:
            continue
        for n in names:
            try:
                os.unlink(os.path.join(d, n))
                removed += 1
            except OSError:
                pass
    return removed


def remove_temp_files(folders: Iterable[Path | str]) -> list[str]:
    """Remove every temp file a killed atomic write left in these folders, whoever wrote it: lorawb's
    (``.lwb-<tag>-<n>.tmp``/``.old``) and older versions' (``.<name>.<random>.tmp``). Only for
    folders no other process writes in at the same time (a run folder under its run lock).
    Returns the names removed."""
    removed = []
    for d in dict.fromkeys(os.fspath(f) for f in folders):
        try:
            names = [
                n for n in os.listdir(d) if n.startswith(TEMP_PREFIX) or (n.startswith(".") and n.endswith(".tmp"))
            ]
        except OSError:
            continue
        for n in names:
            path = os.path.join(d, n)
            try:
                if os.path.isfile(path) and not os.path.islink(path):
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
    return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_temp(path: Path, data: bytes, tag: str | None = None) -> tuple[str, os.stat_result]:
    """Write ``data`` to a new temp file beside ``path`` (with ``path``'s mode); not yet synced."""
    tmp, fd = _open_temp(path, tag)
    try:
        _write_all(fd, data)
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.fchmod(fd, 0o644)
        return tmp, os.fstat(fd)
    except BaseException:
        os.close(fd)
        fd = -1
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2) (one call makes every written file of a file system durable), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def _sync_files(paths: list[str], pool: ThreadPoolExecutor | None) -> None:
    """Make the data of these written files durable, in as few calls as the system allows.

    Linux: one syncfs per file system (the kernel writes every dirty file of it in one go and
    commits the journal once); where syncfs is missing or fails, one fsync per file, run together
    in the pool (the file system groups concurrent fsyncs into a few journal commits).
    """
    if _syncfs is not None and os.environ.get("LORAWB_FSYNC_EACH") != "1":
        done: set[int] = set()
        for d in dict.fromkeys(os.path.dirname(p) for p in paths):  # a temp file is on its folder's file system
            try:
                dev = os.stat(d).st_dev
            except OSError:
                continue
            if dev in done:
                continue
            fd = os.open(d, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    break  # fall back to fsync of each file
            finally:
                os.close(fd)
            done.add(dev)
        else:
            return

    def fsync(p: str) -> None:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    if pool is None:
        for p in paths:
            fsync(p)
    else:
        list(pool.map(fsync, paths))


def _fsync_dir(d: Path) -> None:
    try:
        dfd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _keep_old(path: Path, tag: str | None = None) -> str | None:
    """Hard-link the file at ``path`` under a hidden name beside it; None where there is no file (or no links).

    A rename over a file frees the old file's blocks inside the rename; on a disk mounted with
    ``discard`` (most cloud VMs) that costs 1-2 ms per file. With the old version still linked
    the rename frees nothing, and ``_Reaper`` removes the links after the write has returned.
    """
    old = _temp_name(os.fspath(path), "old", tag)
    try:
        os.link(path, old)
    except OSError:
        return None
    return old


class _Reaper:
    """Removes the old versions' links in a background thread (joined at exit: nothing is left behind)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def put(self, paths: list[str]) -> None:
        if not paths:
            return
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lorawb-reaper", daemon=True)
                self._thread.start()
                atexit.register(self.wait)
        self._q.put(paths)

    def _run(self) -> None:
        while True:
            paths = self._q.get()
            for p in paths or ():
                try:
                    os.unlink(p)
                except OSError:
                    pass
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued link is removed; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


_reaper = _Reaper()


def wait_for_cleanup(timeout: float | None = None) -> bool:
    """Wait until the old versions left by ``atomic_write_many`` are removed (tests, benchmarks)."""
    return _reaper.wait(timeout)


_kill_counts: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Test hook for the fault tests: ``LORAWB_TEST_KILL_AT=NAME:K`` kills this process (SIGKILL) the
    K+1-th time it passes the point ``NAME`` (K = 0: the first time). Points: ``rename`` (before each
    rename of a bulk write), ``move`` (before each file of a triage move), ``promote`` (before each
    promoted image), ``journaled`` (just after a change's intent is recorded, before any file changes)."""
    wanted = os.environ.get("LORAWB_TEST_KILL_AT")
    if not wanted:
        return
    point, _, k = wanted.partition(":")
    if point != name:
        return
    seen = _kill_counts.get(name, 0)
    _kill_counts[name] = seen + 1
    if seen >= int(k or 0):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_many(
    items: Sequence[tuple[Path, bytes]],
    *,
    before_replace: Callable[[int], bool] | None = None,
    errors: dict[int, str] | None = None,
    workers: int = 32,
    tag: str | None = None,
) -> dict[int, os.stat_result]:
    """Write many files, each atomically (temp file + fsync + rename), fast enough for 10,000 captions.

    The order, so that a crash or a kill at any moment leaves every file either old or new:

    1. every temp file is written beside its target (by a thread pool: creating files waits on
       the file system's journal, and in parallel the waits overlap);
    2. their data is made durable together: one ``syncfs`` per file system on Linux, else one
       fsync per file run together (see ``_sync_files``); then one fsync per folder;
    3. each target's current version is kept by a hard link (so the rename frees no blocks,
       see ``_keep_old``), and the temp file is renamed over it, in order;
    4. one fsync per folder makes the renames durable; the kept old versions are removed in
       the background (``wait_for_cleanup``).

    ``before_replace(i)`` is called just before item ``i`` replaces its target; returning False
    skips it (its temp file is removed): the caller's last-moment conflict check. Returns
    {index: stat of the file written} (a rename keeps the temp file's mtime, so these are the
    files' stats now, for later conflict checks). A temp file that cannot be written raises
    LorawbError before anything is renamed; a rename that fails raises too, unless ``errors`` is
    given: then the reason is stored there under the item's index and the rest go on.
    ``tag`` names the temp files (and kept old versions) of a journaled change, so that what a kill
    leaves behind can be found and removed (``remove_leftovers``).
    """
    # The watcher tells these writes from other programs' (lorawb.core.ownwrites).
    with ownwrites.writing([path for path, _ in items]):
        return _atomic_write_many(items, before_replace, errors, workers, tag)


def _atomic_write_many(
    items: Sequence[tuple[Path, bytes]],
    before_replace: Callable[[int], bool] | None,
    errors: dict[int, str] | None,
    workers: int,
    tag: str | None = None,
) -> dict[int, os.stat_result]:
    temps: list[str | None] = [None] * len(items)
    stats: list[os.stat_result | None] = [None] * len(items)
    olds: list[str] = []

    def cleanup() -> None:
        for tmp in temps:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    dirs = list(dict.fromkeys(path.parent for path, _ in items))
    pool = ThreadPoolExecutor(max_workers=min(workers, _WRITERS)) if len(items) > 8 and workers > 1 else None
    try:
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)

        def one(i: int) -> None:
            path, data = items[i]
            try:
                temps[i], stats[i] = _write_temp(path, data, tag)
            except OSError as exc:
                exc.filename = os.fspath(path)  # name the caption, not its temp file
                raise

        if pool is not None:
            for _ in pool.map(one, range(len(items))):
                pass
        else:
            for i in range(len(items)):
                one(i)
        _sync_files([t for t in temps if t is not None], pool)
        for d in dirs:
            _fsync_dir(d)
    except OSError as exc:
        if pool is not None:
            pool.shutdown()
        cleanup()
        raise write_error(exc, None, "nothing was written, the originals are unchanged") from exc
    if pool is not None:
        pool.shutdown()
    done: dict[int, os.stat_result] = {}
    try:
        for i, (path, _) in enumerate(items):
            tmp = temps[i]
            kill_point("rename")
            try:
                if before_replace is not None and not before_replace(i):
                    os.unlink(tmp)  # type: ignore[arg-type]
                else:
                    old = _keep_old(path, tag)
                    if old is not None:
                        olds.append(old)
                    os.replace(tmp, path)  # type: ignore[arg-type]
                    done[i] = stats[i]  # type: ignore[assignment]
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
                written = f"{len(done)} file(s) before it were written" if done else "nothing was written"
                raise write_error(exc, path, written) from exc
        for d in dirs:  # make the renames themselves durable
            _fsync_dir(d)
    finally:
        _reaper.put(olds)
    return done
