"""Decoding for the embedding stage: worker-side (CPU) and batched on the device (nvJPEG).

Decoding workers hand the main process **uint8**, never float32 (4x less to pickle
and copy): either the image already decoded and resized on the CPU with Pillow
(``kind == 'pixels'``, shape (S, S, 3)), or, on the device-decode path, the
undecoded JPEG file bytes (``kind == 'jpeg'``), which the main process decodes in
batches on the GPU with ``torchvision.io.decode_jpeg(list, device='cuda')`` (nvJPEG)
and resizes there. Normalisation always runs in the main process, on the device.

Every file is still opened and decoded by Pillow in the worker on the device path,
at a reduced JPEG draft scale: that validates it (truncated files, bombs, broken
headers are skipped with a reason exactly as on the CPU path), gives the size
after EXIF orientation, and makes the thumbnail. JPEGs Pillow sees as CMYK, and
all other formats, take the CPU path; a JPEG the device decoder rejects is decoded
on the CPU in the main process.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import images
from .registry import BackboneSpec

__all__ = ["DECODES", "DecodedBatch", "DecodeTask", "collate", "to_device_input", "orient", "resize_on_device"]

#: ``'cpu'``: Pillow in the workers; ``'device'``: JPEG bytes decoded on the device in
#: batches (others on the CPU); ``'auto'``: ``'device'`` on CUDA, else ``'cpu'``.
DECODES: tuple[str, ...] = ("auto", "cpu", "device")

#: Thumbnails are at most 160 px, so the validating decode on the device path asks
#: libjpeg for no more than this (DCT scaling: 1/2, 1/4, 1/8 of the work).
_THUMB_DRAFT = (160, 160)

#: Pillow modes of JPEGs nvJPEG decodes to RGB as Pillow would (CMYK/YCCK differ: CPU).
_DEVICE_JPEG_MODES = frozenset({"RGB", "L"})


@dataclass(frozen=True)
class Item:
    """What a worker hands over for one file (see :class:`DecodeTask`)."""

    image_id: int
    kind: str  # 'pixels', 'jpeg' or 'failed'
    payload: object  # (S, S, 3) uint8 ndarray, the file's bytes, or None
    width: int
    height: int
    orientation: int  # EXIF orientation 1..8 still to apply (jpeg kind only)
    path: str
    reason: str | None = None


class DecodeTask:
    """Item i -> :class:`Item`; runs in DataLoader workers (picklable, no model).

    Parameters
    ----------
    items : sequence of (int, Path)
    spec : BackboneSpec
        Input size and crop side.
    view : {'whole', 'crop'}
    thumbs_dir : Path or None
        Where ``<id>.jpg`` thumbnails are written.
    device_jpeg : bool
        Hand over the bytes of RGB/grey JPEGs for device decoding instead of pixels.
    """

    def __init__(self, items, spec: BackboneSpec, view: str, thumbs_dir: Path | None, device_jpeg: bool):
        self.items = list(items)
        self.spec = spec
        self.view = view
        self.thumbs_dir = thumbs_dir
        self.device_jpeg = device_jpeg
        side = 2 * spec.input_size  # libjpeg draft: decode no smaller than 2x the input
        self.draft = (side, side)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        image_id, path = self.items[i]
        path = Path(path)
        try:
            head = _jpeg_head(path) if self.device_jpeg else None
            draft = _THUMB_DRAFT if head is not None else self.draft
            img = images.load_image(path, draft_size=draft)
        except images.BadImageError as e:
            return Item(image_id, "failed", None, 0, 0, 1, str(path), str(e))
        except Exception as e:  # whatever else an odd file provokes in a decoder
            return Item(image_id, "failed", None, 0, 0, 1, str(path), f"cannot decode: {type(e).__name__}: {e}")
        w, h = img.info.get(images.ORIGINAL_SIZE_KEY, img.size)
        if self.thumbs_dir is not None:
            # Not caught: failing to write into the project (disk full) is no bad file.
            images.make_thumbnail(img, self.thumbs_dir / f"{image_id}.jpg")
        if head is not None:
            data, orientation = head
            return Item(image_id, "jpeg", data, int(w), int(h), orientation, str(path))
        try:
            pixels = np.asarray(resize_pil(img, self.spec, self.view))
        except Exception as e:
            return Item(image_id, "failed", None, 0, 0, 1, str(path),
                        f"preprocessing failed: {type(e).__name__}: {e}")
        return Item(image_id, "pixels", pixels, int(w), int(h), 1, str(path))


def _jpeg_head(path: Path) -> tuple[bytes, int] | None:
    """(file bytes, EXIF orientation) when the device decoder should take this file, else None."""
    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode not in _DEVICE_JPEG_MODES:
                return None
            orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # load_image, next, gives the reason
        return None
    return path.read_bytes(), orientation if 1 <= orientation <= 8 else 1


def resize_pil(img: Image.Image, spec: BackboneSpec, view: str) -> Image.Image:
    """The CPU geometry: ``view`` of ``img`` at ``spec.input_size`` square, PIL bilinear, RGB.

    Raises
    ------
    ValueError
        For an unknown ``view``.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    s = spec.input_size
    if view == "whole":
        return img.resize((s, s), Image.Resampling.BILINEAR)
    if view == "crop":
        w, h = img.size
        nw, nh = _crop_resize_size(w, h, spec)
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - s) // 2, (nh - s) // 2
        return img.crop((left, top, left + s, top + s))
    raise ValueError(f"unknown view {view!r}; expected 'whole' or 'crop'")


def _crop_resize_size(w: int, h: int, spec: BackboneSpec) -> tuple[int, int]:
    s, scale = spec.input_size, spec.crop_short_side / min(w, h)
    return max(s, round(w * scale)), max(s, round(h * scale))


@dataclass
class DecodedBatch:
    """A collated batch: successes in input order, split by how they were handed over.

    Attributes
    ----------
    ids : ndarray (B,), int64
        Images handed over (pixels or JPEG bytes), input order.
    width, height : ndarray (B,), int64
    pixels : uint8 tensor (P, S, S, 3) or None
        The CPU-decoded images; ``pixel_pos`` are their positions in ``ids``.
    jpeg_blob : 1-D uint8 tensor or None
        The undecoded JPEG files back to back (one tensor per batch: one shared-memory
        handle crosses the process boundary, not one per file); ``jpeg_ends`` their end
        offsets, :attr:`jpegs` their views; ``jpeg_pos`` their positions in ``ids``,
        ``orientations`` their EXIF orientation, ``paths`` their files (CPU fallback).
    failures : list of (int, str)
    """

    ids: np.ndarray
    width: np.ndarray
    height: np.ndarray
    pixels: torch.Tensor | None
    pixel_pos: list[int]
    jpeg_blob: torch.Tensor | None
    jpeg_ends: list[int]
    jpeg_pos: list[int]
    orientations: list[int]
    paths: list[str]
    failures: list[tuple[int, str]]

    @property
    def jpegs(self) -> list[torch.Tensor]:
        """One 1-D uint8 view of :attr:`jpeg_blob` per JPEG file."""
        starts = [0, *self.jpeg_ends[:-1]]
        return [self.jpeg_blob[a:b] for a, b in zip(starts, self.jpeg_ends)]

    def pin_memory(self) -> "DecodedBatch":
        # DataLoader(pin_memory=True) calls this: page-locked memory copies to the GPU asynchronously.
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        if self.jpeg_blob is not None:
            self.jpeg_blob = self.jpeg_blob.pin_memory()
        return self


def collate(samples: list[Item]) -> DecodedBatch:
    """Group a batch of :class:`Item` for :func:`to_device_input` (runs in the worker)."""
    ok = [s for s in samples if s.kind != "failed"]
    pix = [k for k, s in enumerate(ok) if s.kind == "pixels"]
    jpg = [k for k, s in enumerate(ok) if s.kind == "jpeg"]
    return DecodedBatch(
        ids=np.array([s.image_id for s in ok], dtype=np.int64),
        width=np.array([s.width for s in ok], dtype=np.int64),
        height=np.array([s.height for s in ok], dtype=np.int64),
        pixels=torch.from_numpy(np.stack([ok[k].payload for k in pix])) if pix else None,
        pixel_pos=pix,
        jpeg_blob=torch.frombuffer(bytearray(b"".join(ok[k].payload for k in jpg)), dtype=torch.uint8) if jpg else None,
        jpeg_ends=np.cumsum([len(ok[k].payload) for k in jpg]).tolist(),
        jpeg_pos=jpg,
        orientations=[ok[k].orientation for k in jpg],
        paths=[ok[k].path for k in jpg],
        failures=[(int(s.image_id), s.reason) for s in samples if s.kind == "failed"],
    )


# ---------------------------------------------------------------------------
# on the device


def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1..8) to a (C, H, W) tensor, as ``PIL.ImageOps.exif_transpose``."""
    if orientation == 2:
        return x.flip(2)
    if orientation == 3:
        return x.flip((1, 2))
    if orientation == 4:
        return x.flip(1)
    if orientation == 5:
        return x.transpose(1, 2)
    if orientation == 6:
        return torch.rot90(x, -1, (1, 2))
    if orientation == 7:
        return x.transpose(1, 2).flip((1, 2))
    if orientation == 8:
        return torch.rot90(x, 1, (1, 2))
    return x


def resize_on_device(x: torch.Tensor, spec: BackboneSpec, view: str) -> torch.Tensor:
    """(N, 3, H, W) uint8 images of one size -> (N, 3, S, S) float32 in 0..255, on their device.

    Bilinear with antialiasing (``F.interpolate(antialias=True)``), the tensor
    counterpart of Pillow's bilinear resize, which filters over the scaled support.
    """
    s = spec.input_size
    x = x.float()
    h, w = x.shape[-2:]
    if view == "whole":
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    nw, nh = _crop_resize_size(w, h, spec)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - s) // 2, (nw - s) // 2
    return x[..., top:top + s, left:left + s]


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Batched JPEG decode to RGB on ``device``; an image the decoder rejects becomes None."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29+: image decoding deprecated in favour of TorchCodec
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the whole batch call: retry one by one
            out = []
            for d in data:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out


def to_device_input(batch: DecodedBatch, spec: BackboneSpec, view: str, device: torch.device, *,
                    channels_last: bool = True) -> tuple[torch.Tensor | None, np.ndarray, list[tuple[int, str]]]:
    """Finish decoding and preprocessing a batch on ``device``: the network input.

    Parameters
    ----------
    batch : DecodedBatch
    spec : BackboneSpec
        Input size, crop side, mean and std.
    view : {'whole', 'crop'}
    device : torch.device
        Where decoding (JPEG bytes), resizing and normalisation run.
    channels_last : bool, default True
        Memory layout of ``x``: channels_last (torch's convolutions) or contiguous
        NCHW (what ONNX Runtime takes).

    Returns
    -------
    x : tensor (B', 3, S, S), float32 on ``device``, or None when nothing decoded
        ``(pixel - mean) / std``, in the order of ``keep``.
    keep : ndarray (B',), int64
        Positions in ``batch.ids`` of the rows of ``x`` (JPEGs no decoder could read are dropped).
    failures : list of (int, str)
        ``(id, reason)`` of those dropped.
    """
    n = len(batch.ids)
    s = spec.input_size
    rows: list[torch.Tensor | None] = [None] * n
    failures: list[tuple[int, str]] = []
    mean = torch.tensor(spec.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)

    def normalised(px: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels, any dtype and layout -> one copy into the wanted layout,
        float32, then ``(x - mean) / std`` in place."""
        x = torch.empty(px.shape, dtype=torch.float32, device=device,
                        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return x.copy_(px).sub_(mean).div_(std)

    if batch.jpeg_blob is None and batch.pixels is not None and list(batch.pixel_pos) == list(range(n)):
        # Every image decoded by the workers (the CPU path): their uint8 batch as it is.
        return normalised(batch.pixels.to(device, non_blocking=True).permute(0, 3, 1, 2)), \
            np.arange(n, dtype=np.int64), failures
    if batch.pixels is not None:
        px = batch.pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        for k, pos in enumerate(batch.pixel_pos):
            rows[pos] = px[k]
    if batch.jpeg_blob is not None:
        decoded = _decode_jpegs(batch.jpegs, device)
        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for pos, img, o, path in zip(batch.jpeg_pos, decoded, batch.orientations, batch.paths):
            if img is None:  # the device decoder refused it: Pillow in this process
                try:
                    pil = images.load_image(Path(path), draft_size=(2 * s, 2 * s))
                    rows[pos] = torch.from_numpy(np.asarray(resize_pil(pil, spec, view)).copy()).to(
                        device).permute(2, 0, 1).float()
                except Exception as e:
                    failures.append((int(batch.ids[pos]), f"cannot decode: {type(e).__name__}: {e}"))
                continue
            img = orient(img, o)
            groups[tuple(img.shape[-2:])].append((pos, img))
        for members in groups.values():  # one resize call per distinct image size
            out = resize_on_device(torch.stack([m[1] for m in members]), spec, view)
            for (pos, _), r in zip(members, out):
                rows[pos] = r
    keep = np.array([k for k in range(n) if rows[k] is not None], dtype=np.int64)
    if len(keep) == 0:
        return None, keep, failures
    return normalised(torch.stack([rows[k] for k in keep])), keep, failures
