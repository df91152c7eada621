"""labeler.images: discovery, hashing, safe decoding of bad input, thumbnails."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fixtures_images as fx
from labeler.images import (
    IMAGE_EXTENSIONS,
    ORIGINAL_SIZE_KEY,
    BadImageError,
    content_hash,
    discover,
    load_image,
    make_thumbnail,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _reason(path: Path, **kw) -> str:
    with pytest.raises(BadImageError) as info:
        load_image(path, **kw)
    return str(info.value)


# ---------------------------------------------------------------------------
# bad files


@pytest.mark.parametrize(
    ("maker", "expected"),
    [
        (fx.make_zero_byte, "empty file (0 bytes)"),
        (fx.make_random_bytes, "not an image (cannot identify image file)"),
        (fx.make_text_as_jpg, "not an image (cannot identify image file)"),
        (fx.make_truncated_jpeg, "truncated file"),
        (fx.make_one_pixel, "image too small: 1x1"),
    ],
)
def test_bad_files_give_reason(tmp_path, maker, expected):
    assert _reason(maker(tmp_path)) == expected


def test_corrupt_png_data_is_bad(tmp_path):
    reason = _reason(fx.make_corrupt_png_body(tmp_path))
    assert reason.startswith(("corrupt image data", "truncated file")), reason


def test_real_decompression_bomb_is_small_on_disk_and_rejected(tmp_path):
    # 20000 x 20000 under Pillow's own default limit (89,478,485 in Pillow 13,
    # 178,956,970 before): more than twice the limit, so Pillow raises.
    path = fx.make_png_bomb(tmp_path)
    assert path.stat().st_size < 200_000
    limit = Image.MAX_IMAGE_PIXELS
    assert 2 * limit < 400_000_000
    assert _reason(path) == f"decompression bomb: 400000000 pixels > limit {limit}"


def test_bomb_in_warning_band_is_rejected_too(tmp_path):
    # Above MAX_IMAGE_PIXELS but below 2x, where Pillow itself only warns.
    limit = Image.MAX_IMAGE_PIXELS
    side = int((1.5 * limit) ** 0.5)
    path = fx.make_png_bomb(tmp_path, side=side)
    assert _reason(path) == f"decompression bomb: {side * side} pixels > limit {limit}"


def test_min_side_is_configurable(tmp_path):
    path = fx.make_photo(tmp_path, size=(40, 3))
    assert _reason(path, min_side=4) == "image too small: 40x3"
    assert load_image(path).size == (40, 3)


def test_directory_and_missing_file(tmp_path):
    assert _reason(tmp_path) == "is a directory"
    assert _reason(tmp_path / "nope.jpg") == "file not found"


def test_permission_denied_maps_to_reason(tmp_path, monkeypatch):
    # Works for any user: simulate the OS refusing the read.
    path = fx.make_photo(tmp_path, size=(32, 32))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("labeler.images.Image.open", refuse)
    assert _reason(path) == "permission denied"


def test_unreadable_file_for_real(tmp_path):
    """chmod 000 for real. Root bypasses file modes, so as root the check runs in a
    child process that imports everything, then drops to user ``nobody`` (uid 65534)."""
    if not IS_ROOT:
        path = fx.make_unreadable(tmp_path)
        assert _reason(path) == "permission denied"
        entries, skipped = discover(tmp_path)
        assert (path.name, "permission denied") in skipped
        return
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)  # let nobody traverse to the file itself
        path = fx.make_unreadable(Path(d))
        code = textwrap.dedent(f"""
            import os, sys
            sys.path[:0] = {[str(Path(__file__).parents[1])]!r}
            from labeler.images import load_image, discover, BadImageError
            from PIL import Image
            Image.init()  # import every plugin while still root (root's home is private)
            os.setgid(65534); os.setuid(65534)
            try:
                load_image({str(path)!r}); print('LOADED')
            except BadImageError as e:
                print(e)
            print(discover({d!r})[1])
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "permission denied"
        assert "('secret.jpg', 'permission denied')" in lines[1]


# ---------------------------------------------------------------------------
# good files in special modes


def _rgb(path: Path, **kw) -> np.ndarray:
    img = load_image(path, **kw)
    assert img.mode == "RGB"
    return np.asarray(img)


def test_16bit_png_scaled_not_clipped(tmp_path):
    a = _rgb(fx.make_16bit_png(tmp_path))
    assert a.shape == (32, 64, 3)
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255
    assert 120 <= a[0, 32, 0] <= 135  # mid-grey, not saturated to 255
    assert np.all(np.diff(a[0, :, 0].astype(int)) >= 0)


def test_float_image_scaled_min_max(tmp_path):
    a = _rgb(fx.make_float_tiff(tmp_path))
    assert a.shape == (16, 32, 3)
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255


def test_cmyk_jpeg(tmp_path):
    assert _rgb(fx.make_cmyk_jpeg(tmp_path)).shape == (60, 80, 3)


def test_palette_transparency_composited_on_white(tmp_path):
    a = _rgb(fx.make_palette_transparent(tmp_path))
    assert a.shape == (30, 40, 3)
    assert tuple(a[0, 0]) == (255, 255, 255)
    assert tuple(a[0, -1]) == (255, 0, 0)


def test_rgba_composited_on_white(tmp_path):
    a = _rgb(fx.make_rgba(tmp_path))
    assert a.shape == (40, 50, 3)
    assert tuple(a[0, 0]) == (255, 255, 255)  # transparent -> white
    assert tuple(a[0, -1]) == (0, 0, 0)  # opaque black stays black


def test_la_and_l(tmp_path):
    a = _rgb(fx.make_la(tmp_path))
    assert a.shape == (30, 20, 3) and np.all(a == 100)
    elpv = fx.copy_elpv(tmp_path, n=1)[0]
    with Image.open(elpv) as raw:
        assert raw.mode == "L"
    assert _rgb(elpv).shape == (300, 300, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_real_photo_formats(tmp_path, fmt):
    path = fx.make_photo(tmp_path, "astronaut", fmt=fmt)
    img = load_image(path)
    assert img.size == (512, 512)
    assert img.info[ORIGINAL_SIZE_KEY] == (512, 512)


def test_exif_orientation_applied(tmp_path):
    img = load_image(fx.make_exif_rotated_jpeg(tmp_path))
    assert img.size == (40, 80)
    assert img.info[ORIGINAL_SIZE_KEY] == (40, 80)


def test_jpeg_draft_decodes_smaller_but_reports_original_size(tmp_path):
    path = fx.make_photo(tmp_path, "china")  # 640 x 427
    img = load_image(path, draft_size=(160, 160))
    assert img.size == (320, 214)  # libjpeg scale 1/2 is the smallest >= 160
    assert img.info[ORIGINAL_SIZE_KEY] == (640, 427)
    assert load_image(path).size == (640, 427)


# ---------------------------------------------------------------------------
# discovery, hashing, thumbnails


def test_discover(tmp_path):
    root = tmp_path / "root"
    (root / "sub dir" / "deeper").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    fx.make_photo(root, filename="über café 1.png", fmt="PNG", size=(20, 20))
    fx.make_photo(root / "sub dir", filename="UPPER.JPG", size=(20, 20))
    fx.make_photo(root / "sub dir" / "deeper", filename="b.Tiff", fmt="TIFF", size=(20, 20))
    fx.make_text_as_jpg(root)  # included: decoding decides later
    (root / "readme.txt").write_text("not a candidate")
    fx.make_outside_symlink(root, outside)
    (root / "inside_link.png").symlink_to(root / "über café 1.png")
    (root / "sub dir" / "loop").symlink_to(root, target_is_directory=True)
    (root / "out_dir").symlink_to(outside, target_is_directory=True)
    (root / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    # Hidden files and folders are not photos of the collection.
    fx.make_text_as_jpg(root, "._über café 1.png")  # a macOS resource fork
    (root / ".thumbnails").mkdir()
    fx.make_photo(root / ".thumbnails", filename="t.jpg", size=(20, 20))
    before = sorted(p.name for p in root.rglob("*"))

    entries, skipped = discover(root)

    assert [e.rel_path for e in entries] == [
        "inside_link.png", "notes.jpg", "sub dir/UPPER.JPG", "sub dir/deeper/b.Tiff", "über café 1.png",
    ]
    assert all(e.size > 0 and e.mtime > 0 for e in entries)
    assert dict(skipped) == {
        "broken.jpg": "broken symlink",
        "out_dir": "symlink points outside the image root (not followed)",
        "outside.jpg": "symlink points outside the image root (not followed)",
    }
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written


def test_discover_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        discover(tmp_path / "nope")
    f = fx.make_zero_byte(tmp_path)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        discover(f)


def test_extensions():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def test_content_hash(tmp_path):
    import hashlib

    p = fx.make_photo(tmp_path, "coffee", fmt="PNG")
    h = content_hash(p)
    assert h == content_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 7))  # spans several 1 MiB chunks
    assert content_hash(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_make_thumbnail(tmp_path):
    img = load_image(fx.make_photo(tmp_path, "china"))
    dest = tmp_path / "thumbs" / "7.jpg"
    make_thumbnail(img, dest)
    with Image.open(dest) as t:
        assert t.format == "JPEG" and t.size == (160, 107)
    assert [p.name for p in dest.parent.iterdir()] == ["7.jpg"]  # no temp file left
    make_thumbnail(load_image(fx.make_rgba(tmp_path)), dest, size=32)  # overwrite
    with Image.open(dest) as t:
        assert t.size == (32, 26)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    """The one helper behind save_array, embedding chunks, labeler.toml and thumbnails."""
    from labeler.atomic import atomic_write

    dest = tmp_path / "a.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(dest) as f:
            f.write(b"half of the new")
            raise RuntimeError("crash mid-write")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with atomic_write(dest, durable=False) as f:
        f.write(b"new")
    assert dest.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
