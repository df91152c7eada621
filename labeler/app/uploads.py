"""Server-side checks of an uploaded query image (before anything uses it).

The browser's ``accept`` and size limits are a convenience, not a defence: the
bytes are checked here by size, by decoding (never by file name or the data
URI's claimed type) and against Pillow's decompression-bomb pixel limit.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from ..errors import BadInputError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
ALLOWED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


class UploadError(BadInputError):
    """The upload is not an acceptable image (the message says why, for the page)."""


def decode_data_uri(contents: str, *, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of a ``data:...;base64,...`` string from ``dcc.Upload``.

    Raises
    ------
    UploadError
        Not a base64 data URI, or larger than ``max_bytes``.
    """
    if not isinstance(contents, str) or "," not in contents or not contents.startswith("data:"):
        raise UploadError("the upload is not a file")
    header, b64 = contents.split(",", 1)
    if ";base64" not in header:
        raise UploadError("the upload is not base64-encoded")
    # Reject by encoded length before decoding: 4 base64 characters carry 3 bytes.
    if len(b64) * 3 // 4 > max_bytes + 3:
        raise UploadError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise UploadError("the upload is not valid base64") from e
    if len(data) > max_bytes:
        raise UploadError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise UploadError("the file is empty")
    return data


def check_image(data: bytes, *, max_pixels: int | None = None) -> str:
    """Decode ``data`` fully; return its Pillow format name (e.g. 'JPEG').

    Parameters
    ----------
    max_pixels : int or None
        Width x height limit; default Pillow's ``Image.MAX_IMAGE_PIXELS``
        (about 89 megapixels), its decompression-bomb guard.

    Raises
    ------
    UploadError
        Not an image, a type not in :data:`ALLOWED_FORMATS`, too many pixels, or
        truncated / corrupt data.
    """
    limit = max_pixels or Image.MAX_IMAGE_PIXELS or 89_478_485
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                if fmt not in ALLOWED_FORMATS:
                    raise UploadError(f"{fmt or 'this file type'} is not an accepted image type "
                                      f"({', '.join(sorted(ALLOWED_FORMATS))})")
                if im.width * im.height > limit:
                    raise UploadError(f"the image has too many pixels ({im.width}x{im.height})")
                im.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError("the image has too many pixels") from e
    except Exception as e:  # Pillow raises many types for bad data
        raise UploadError("the file is not a readable image") from e
    return fmt


@contextmanager
def uploaded_image(contents: str, *, max_bytes: int = MAX_UPLOAD_BYTES):
    """Check an upload and yield a temporary file holding it (removed afterwards).

    Raises
    ------
    UploadError
        See :func:`decode_data_uri` and :func:`check_image`.
    """
    data = decode_data_uri(contents, max_bytes=max_bytes)
    with checked_temp_file(data) as path:
        yield path


@contextmanager
def checked_temp_file(data: bytes):
    """Check image bytes (:func:`check_image`) and yield a temporary file holding
    them, removed afterwards.

    Raises
    ------
    UploadError
        See :func:`check_image`.
    """
    fmt = check_image(data)
    fd, name = tempfile.mkstemp(prefix="labeler-query-", suffix=ALLOWED_FORMATS[fmt])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def preview_data_uri(path, size: int = 240) -> str:
    """A small JPEG of a checked image file as a data URI: the Search tab's preview of an
    uploaded photo (a few kB, whatever the upload's size)."""
    import base64
    import io

    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
