"""Image files: discovery, content hashing, safe decoding of untrusted input, thumbnails.

Everything here is read-only with respect to the user's image folder; the only
writer is :func:`make_thumbnail`, whose destination is inside the project directory.
No torch here: this module is used by the catalogue step and the web app too.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_write
from .errors import BadImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "FileEntry",
    "discover",
    "content_hash",
    "load_image",
    "make_thumbnail",
]

#: File name suffixes treated as images (compared lower-cased).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)

#: Key in ``Image.info`` under which :func:`load_image` records the full-resolution
#: ``(width, height)`` after EXIF orientation (a JPEG draft decode is smaller).
ORIGINAL_SIZE_KEY = "labeler_original_size"

_PIXELS_RE = re.compile(r"\((\d+) pixels\)")




@dataclass(frozen=True)
class FileEntry:
    """One candidate image file found by :func:`discover`.

    Attributes
    ----------
    rel_path : str
        POSIX path relative to the image root (``"sub dir/über café 1.png"``).
    size : int
        Size in bytes (of the symlink target for a followed symlink).
    mtime : float
        Modification time, seconds since the epoch.
    """

    rel_path: str
    size: int
    mtime: float


# ---------------------------------------------------------------------------
# discovery


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def discover(root: Path) -> tuple[list[FileEntry], list[tuple[str, str]]]:
    """Find image files under ``root``, recursively, without writing anything.

    A file is a candidate when its suffix, lower-cased, is in :data:`IMAGE_EXTENSIONS`;
    whether it decodes is checked later by :func:`load_image`. Other files are
    ignored silently, and so are hidden files and folders (names starting with
    '.': ``.git``, ``.thumbnails``, macOS ``._photo.jpg`` resource forks).

    Symlinks: a symlinked *file* whose target lies inside ``root`` is included under
    the link's own path (duplicates are the caller's to detect by content hash).
    Symlinked *directories* are never followed: one pointing inside ``root`` is
    already scanned through its real path (this also rules out loops), one pointing
    outside is reported as skipped. Links resolving outside ``root`` are skipped too.

    Parameters
    ----------
    root : Path
        The image folder.

    Returns
    -------
    entries : list of FileEntry
        Sorted by ``rel_path``.
    skipped : list of (str, str)
        ``(rel_path, reason)`` for paths that were seen but not used: symlinks out of
        the root, broken symlinks, unreadable directories or files, names that are
        not valid UTF-8. Sorted by ``rel_path``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is not a directory.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder is not a directory: {root}")
    real_root = os.path.realpath(root)
    entries: list[FileEntry] = []
    skipped: list[tuple[str, str]] = []
    stack = [""]  # relative posix dirs still to scan
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else str(root)
        try:
            with os.scandir(abs_dir) as it:
                children = list(it)
        except PermissionError:
            skipped.append((rel_dir or ".", "permission denied (directory not readable)"))
            continue
        except OSError as e:
            skipped.append((rel_dir or ".", f"cannot read directory: {e.strerror or e}"))
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                skipped.append((rel.encode("utf-8", "replace").decode(), "file name is not valid UTF-8"))
                continue
            _scan_child(child, rel, real_root, entries, skipped, stack)
    entries.sort(key=lambda e: e.rel_path)
    skipped.sort()
    return entries, skipped


def _scan_child(child, rel, real_root, entries, skipped, stack) -> None:
    is_image = os.path.splitext(child.name)[1].lower() in IMAGE_EXTENSIONS
    try:
        is_link = child.is_symlink()
        if is_link:
            target = os.path.realpath(child.path)
            if not os.path.exists(target):
                if is_image:
                    skipped.append((rel, "broken symlink"))
                return
            if not _inside(target, real_root):
                skipped.append((rel, "symlink points outside the image root (not followed)"))
                return
            if os.path.isdir(target):
                # Its real path is inside the root, so it is scanned there; following
                # it would only duplicate files (or loop).
                return
        if child.is_dir(follow_symlinks=False):
            stack.append(rel)
            return
        if not is_image:
            return
        st = child.stat(follow_symlinks=True)
    except PermissionError:
        skipped.append((rel, "permission denied"))
        return
    except OSError as e:
        skipped.append((rel, f"cannot stat file: {e.strerror or e}"))
        return
    if not stat.S_ISREG(st.st_mode):
        skipped.append((rel, "not a regular file"))
    elif not os.access(child.path, os.R_OK):
        skipped.append((rel, "permission denied"))
    else:
        entries.append(FileEntry(rel_path=rel, size=int(st.st_size), mtime=float(st.st_mtime)))


# ---------------------------------------------------------------------------
# hashing


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (``hashlib.file_digest``: streamed, never all in memory).

    Returns
    -------
    str
        64 lower-case hex digits.

    Raises
    ------
    OSError
        If the file cannot be read (``PermissionError``, ``FileNotFoundError``, ...).
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------
# decoding


def _bomb_reason(e: Exception) -> str:
    m = _PIXELS_RE.search(str(e))
    pixels = m.group(1) if m else "?"
    return f"decompression bomb: {pixels} pixels > limit {Image.MAX_IMAGE_PIXELS}"


def _open_checked(path: Path, draft_size: tuple[int, int] | None):
    """Open and fully decode; returns ``(image, original_size_before_exif)``."""
    try:
        st = os.stat(path)
    except PermissionError:
        raise BadImageError("permission denied") from None
    except FileNotFoundError:
        raise BadImageError("file not found") from None
    except OSError as e:
        raise BadImageError(f"cannot read file: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadImageError("is a directory")
    if st.st_size == 0:
        raise BadImageError("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow warns above MAX_IMAGE_PIXELS and raises only above twice that; both are bombs here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except PermissionError:
            raise BadImageError("permission denied") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImageError(_bomb_reason(e)) from None
        except UnidentifiedImageError:
            raise BadImageError("not an image (cannot identify image file)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise BadImageError(f"cannot open image: {e}") from None
        try:
            original = img.size
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", tuple(draft_size))
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            img.close()
            raise BadImageError(_bomb_reason(e)) from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
            img.close()
            msg = str(e)
            if "truncated" in msg.lower() or isinstance(e, EOFError):
                raise BadImageError("truncated file") from None
            raise BadImageError(f"corrupt image data: {msg or type(e).__name__}") from None
    return img, original


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    """Min..max of the finite values to 0..255 (a constant image becomes 0)."""
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    out = np.where(finite, a - lo, 0.0)
    if hi > lo:
        out *= 255.0 / (hi - lo)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16"):
        # Full 16-bit range to 8 bits (v / 257), preserving relative brightness.
        a = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((a + 128) // 257).astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img)), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Transparent pixels composited onto white, like image viewers and browsers show
        # them; dropping alpha would expose arbitrary (often black) colour under it.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise BadImageError(f"unsupported image mode {mode}: {e}") from None


def load_image(
    path: Path, *, draft_size: tuple[int, int] | None = None, min_side: int = 2
) -> Image.Image:
    """Decode an untrusted image file fully into an RGB image, or say why not.

    Steps: check the file is readable and non-empty; open with Pillow, treating
    ``DecompressionBombWarning`` (more than ``Image.MAX_IMAGE_PIXELS`` pixels, by
    89,478,485 in Pillow 13) as an error; optionally JPEG draft mode; decode fully
    (truncated files are errors: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False);
    apply the EXIF orientation (``ImageOps.exif_transpose``); convert to RGB.

    Mode conversion: 16-bit grey (``I;16*``) is scaled ``v / 257`` to 8 bits; 32-bit
    integer ``I`` and float ``F`` are scaled min..max to 0..255; images with alpha
    (``RGBA``, ``LA``, ``PA``, palette with transparency) are composited onto white;
    ``CMYK``, ``L``, ``1``, ``P``, ``YCbCr`` use Pillow's ``convert('RGB')``.

    Parameters
    ----------
    path : Path
        The file.
    draft_size : (int, int), optional
        For JPEGs, let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) no smaller
        than this ``(width, height)`` — several times faster for large photos.
        Ignored for other formats.
    min_side : int, default 2
        Images whose width or height is below this are rejected.

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``, loaded. ``img.info[ORIGINAL_SIZE_KEY]`` is the full-resolution
        ``(width, height)`` after EXIF orientation (``img.size`` may be smaller when
        ``draft_size`` was used).

    Raises
    ------
    BadImageError
        With a short reason: ``'empty file (0 bytes)'``, ``'permission denied'``,
        ``'not an image (cannot identify image file)'``, ``'truncated file'``,
        ``'decompression bomb: N pixels > limit M'``, ``'image too small: 1x1'``,
        ``'corrupt image data: ...'``, ...
    """
    img, (ow, oh) = _open_checked(Path(path), draft_size)
    try:
        if min(ow, oh) < min_side:
            raise BadImageError(f"image too small: {ow}x{oh}")
        decoded = img.size
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block should not make a good picture unusable
            oriented = img
        if oriented.size != decoded and oriented.size == decoded[::-1]:
            ow, oh = oh, ow
        rgb = _to_rgb(oriented)
        if rgb is img:
            rgb = img.copy()  # detach from the file handle closed below
    finally:
        img.close()
    rgb.info[ORIGINAL_SIZE_KEY] = (int(ow), int(oh))
    return rgb


def make_thumbnail(img: Image.Image, dest: Path, *, size: int = 160) -> None:
    """Write a small JPEG of ``img`` to ``dest``, atomically.

    Parameters
    ----------
    img : PIL.Image.Image
        Typically the output of :func:`load_image` (any mode is accepted).
    dest : Path
        Destination file; its parent is created if missing. Written to a temporary
        file in the same directory, then ``os.replace``-d, so readers never see a
        partial thumbnail.
    size : int, default 160
        Longest side in pixels (smaller images are not enlarged).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    thumb = img if img.mode == "RGB" else _to_rgb(img)
    thumb = thumb.copy()
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    with atomic_write(dest, durable=False) as f:
        thumb.save(f, format="JPEG", quality=80, optimize=True)
