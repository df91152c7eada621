"""Generators of good and bad image files for tests (a plain module, not a conftest).

Each ``make_*`` function writes one file into ``directory`` and returns its path.
All are fast (well under a second) and need no network: real photos come from
scikit-image, scikit-learn and the ``elpv_dataset`` package data.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------
# real photos


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def photo_array(name: str = "chelsea") -> np.ndarray:
    """An RGB uint8 photo: skimage ``astronaut``/``chelsea``/``coffee`` or sklearn ``china``/``flower``."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    return _skimage(name)


def make_photo(directory: Path, name: str = "chelsea", *, fmt: str = "JPEG",
               filename: str | None = None, size: tuple[int, int] | None = None) -> Path:
    """Save a real photo (optionally resized to ``size``) as ``fmt``."""
    img = Image.fromarray(photo_array(name)).convert("RGB")
    if size is not None:
        img = img.resize(size, Image.Resampling.BILINEAR)
    ext = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}[fmt]
    path = Path(directory) / (filename or f"{name}{ext}")
    img.save(path, format=fmt)
    return path


def elpv_images_dir() -> Path:
    """The folder of 300x300 greyscale ELPV solar-cell PNGs shipped in ``elpv_dataset``."""
    import elpv_dataset

    return Path(elpv_dataset.__file__).parent / "data" / "images"


def copy_elpv(directory: Path, n: int = 3) -> list[Path]:
    """Copy the first ``n`` ELPV cell images into ``directory``."""
    src = sorted(elpv_images_dir().glob("*.png"))[:n]
    out = []
    for p in src:
        dst = Path(directory) / p.name
        shutil.copyfile(p, dst)
        out.append(dst)
    return out


# ---------------------------------------------------------------------------
# bad files


def make_zero_byte(directory: Path, filename: str = "empty.jpg") -> Path:
    path = Path(directory) / filename
    path.write_bytes(b"")
    return path


def make_random_bytes(directory: Path, filename: str = "corrupt.png", n: int = 4096) -> Path:
    path = Path(directory) / filename
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def make_text_as_jpg(directory: Path, filename: str = "notes.jpg") -> Path:
    path = Path(directory) / filename
    path.write_text("this is a text file, not a picture\n" * 20)
    return path


def make_truncated_jpeg(directory: Path, filename: str = "truncated.jpg") -> Path:
    """A real JPEG photo with its second half cut off."""
    buf = io.BytesIO()
    Image.fromarray(photo_array("astronaut")).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    path = Path(directory) / filename
    path.write_bytes(data[: len(data) // 2])
    return path


def make_corrupt_png_body(directory: Path, filename: str = "badcrc.png") -> Path:
    """A PNG with a valid header whose image data is garbage."""
    buf = io.BytesIO()
    Image.fromarray(photo_array("coffee")).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    mid = len(data) // 2
    data[mid: mid + 512] = np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8).tobytes()
    path = Path(directory) / filename
    path.write_bytes(bytes(data))
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_png_bomb(directory: Path, side: int = 20000, filename: str = "bomb.png") -> Path:
    """A genuine, valid 1-bit black PNG of ``side`` x ``side`` pixels.

    20000 x 20000 = 400,000,000 pixels, more than twice Pillow's default
    ``MAX_IMAGE_PIXELS`` (89,478,485 in Pillow 13; 178,956,970 in Pillow 10-12), where
    Pillow raises; between 1x and 2x it only warns. The file is ~50 KB because rows
    of zeros compress ~1000:1.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte 0 + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(comp.compress(row * (side % 1000)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")
    path = Path(directory) / filename
    path.write_bytes(data)
    return path


def make_one_pixel(directory: Path, filename: str = "pixel.png") -> Path:
    path = Path(directory) / filename
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    return path


def make_unreadable(directory: Path, filename: str = "secret.jpg") -> Path:
    """A real JPEG with mode 000. Root ignores file modes: see the permission tests."""
    path = make_photo(directory, "coffee", filename=filename, size=(64, 48))
    os.chmod(path, 0)
    return path


def make_outside_symlink(root: Path, outside: Path, filename: str = "outside.jpg") -> Path:
    """A symlink inside ``root`` to a real photo written in ``outside``."""
    target = make_photo(outside, "chelsea", filename="target.jpg", size=(64, 48))
    link = Path(root) / filename
    link.symlink_to(target)
    return link


# ---------------------------------------------------------------------------
# good files in special modes


def make_16bit_png(directory: Path, filename: str = "gray16.png") -> Path:
    """64x32 horizontal ramp 0..65535 saved as a 16-bit greyscale PNG."""
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    arr = np.tile(ramp, (32, 1))
    path = Path(directory) / filename
    Image.fromarray(arr).save(path)  # mode I;16
    return path


def make_cmyk_jpeg(directory: Path, filename: str = "cmyk.jpg") -> Path:
    path = Path(directory) / filename
    Image.fromarray(photo_array("coffee")).resize((80, 60)).convert("CMYK").save(path, format="JPEG")
    return path


def make_palette_transparent(directory: Path, filename: str = "palette.png") -> Path:
    """40x30 palette image: left half colour index 0 (fully transparent black), right red."""
    img = Image.new("P", (40, 30), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (20, 0, 40, 30))
    path = Path(directory) / filename
    img.save(path, transparency=0)
    return path


def make_rgba(directory: Path, filename: str = "rgba.png") -> Path:
    """50x40 black RGBA image, alpha 0 on the left half and 255 on the right."""
    arr = np.zeros((40, 50, 4), np.uint8)
    arr[:, 25:, 3] = 255
    path = Path(directory) / filename
    Image.fromarray(arr, "RGBA").save(path)
    return path


def make_la(directory: Path, filename: str = "la.png") -> Path:
    arr = np.zeros((30, 20, 2), np.uint8)
    arr[..., 0] = 100
    arr[..., 1] = 255
    path = Path(directory) / filename
    Image.fromarray(arr, "LA").save(path)
    return path


def make_float_tiff(directory: Path, filename: str = "float.tif") -> Path:
    """Mode F ramp from -1.0 to 3.0 (32x16)."""
    arr = np.tile(np.linspace(-1.0, 3.0, 32, dtype=np.float32), (16, 1))
    path = Path(directory) / filename
    Image.fromarray(arr, "F").save(path)
    return path


def make_exif_rotated_jpeg(directory: Path, filename: str = "rotated.jpg") -> Path:
    """A 80x40 (w x h) JPEG whose EXIF orientation 6 says: rotate 90 degrees to show it."""
    img = Image.fromarray(photo_array("chelsea")).resize((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = Path(directory) / filename
    img.save(path, format="JPEG", exif=exif.tobytes())
    return path
