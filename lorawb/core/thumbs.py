"""Thumbnail cache on disk (.lorawb/thumbs/): small PNGs made once, shown instantly after.

Keyed by the image's absolute path, mtime, size and the requested box, so an
edited image gets a fresh thumbnail and a stale one is never shown. Safe to
call from worker threads (each thumbnail is written atomically).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageOps

from lorawb.core.dataset import SAFE_FORMATS
from lorawb.core.fsutil import atomic_write_bytes
from lorawb.errors import ImageError


class ThumbCache:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "thumbs"

    def _key(self, path: Path, size: tuple[int, int]) -> Path | None:
        try:
            st = path.stat()
        except OSError:
            return None
        raw = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{size[0]}x{size[1]}".encode()
        digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
        return self.dir / digest[:2] / f"{digest}.png"

    def cached(self, path: Path, size: tuple[int, int] = (256, 256)) -> Path | None:
        """The cached thumbnail if it exists; never decodes anything."""
        key = self._key(Path(path), size)
        return key if key is not None and key.exists() else None

    def get(self, path: Path, size: tuple[int, int] = (256, 256)) -> Path:
        """The thumbnail of ``path`` fitting in ``size`` (made now if missing). Raises ImageError."""
        path = Path(path)
        key = self._key(path, size)
        if key is None:
            raise ImageError("image not found", path=path)
        if key.exists():
            return key
        atomic_write_bytes(key, make_thumbnail_png(path, size))
        return key


def make_thumbnail_png(path: Path, size: tuple[int, int]) -> bytes:
    """Decode, apply EXIF orientation, fit into ``size``; RGB(A) PNG bytes."""
    try:
        # Only dataset formats: a file named .png that is really PostScript must never reach Ghostscript.
        with Image.open(path, formats=SAFE_FORMATS) as im:
            im.seek(0)
            im.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at reduced scale
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() or im.info.get("transparency") else "RGB")
            im.thumbnail(size, Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=False, compress_level=1)
            return buf.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ImageError(f"cannot make a thumbnail: {exc}", path=path) from exc
