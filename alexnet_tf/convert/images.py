"""Decoding, repairing and re-encoding one image, judged by its content and never by its name.

Section 2 of the paper: "we down-sampled the images to a fixed resolution of 256 × 256. Given a
rectangular image, we first rescaled the image such that the shorter side was of length 256, and
then cropped out the central 256×256 patch from the resulting image." `process` does exactly that
for `resize=256`, and keeps the original bytes for `resize=0` whenever they already are an RGB
JPEG.

ILSVRC-2012 holds a PNG behind a `.JPEG` name, 22 CMYK JPEGs and some grayscale ones; other data
sets hold worse. Each is recognised from its bytes: PNG/GIF/BMP/... content, CMYK and grayscale
JPEGs are converted to RGB JPEG and reported as repaired; empty, truncated, non-image and
undecodable files raise `BadImageError` with the reason, and the caller skips them.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image

STATS_SIZE = 256  # the mean image of section 2 is 256×256×3
RESAMPLE = Image.Resampling.BILINEAR  # antialiased in Pillow (the filter widens when shrinking)

# Magic numbers: https://en.wikipedia.org/wiki/List_of_file_signatures
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# A large but finite limit: ImageNet's largest images are ~ 5000×4000.
Image.MAX_IMAGE_PIXELS = 200_000_000


class BadImageError(ValueError):
    """The bytes are not a usable image; str(e) is the reason written to the manifest."""


@dataclasses.dataclass(frozen=True)
class Processed:
    encoded: bytes  # RGB JPEG
    height: int
    width: int
    pixels: np.ndarray | None  # STATS_SIZE × STATS_SIZE × 3 uint8 (the cropped, resized image)
    repaired: str | None  # why the bytes were converted, or None
    crop: tuple[float, float, float, float]  # (left, top, side_x, side_y) as image fractions
    original_size: tuple[int, int] = (0, 0)  # (height, width) of the original image


def sniff(data: bytes) -> str | None:
    """The image format of `data` from its first bytes ('JPEG', 'PNG', ...), or None."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _open(data: bytes, kind: str, draft_size: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """Decodes `data` fully (so truncation is found now), at reduced scale where allowed; also
    returns the full (height, width), which a reduced decode does not have."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd EXIF; the decode decides
            image = Image.open(io.BytesIO(data))
            full_size = image.size[::-1]
            if draft_size and kind == "JPEG" and image.mode in ("RGB", "L"):
                # libjpeg's DCT scaling: decodes 1/2, 1/4 or 1/8 size directly when the
                # shorter side stays >= draft_size; several times faster on large photos.
                image.draft(image.mode, (draft_size, draft_size))
            image.load()
            return image, full_size
    except Image.DecompressionBombError as e:
        raise BadImageError(f"{kind} too large to decode safely: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        message = str(e)
        if "truncated" in message or isinstance(e, EOFError):
            raise BadImageError(f"truncated {kind} file ({message})") from e
        raise BadImageError(f"undecodable {kind} file ({message})") from e


def _repair_reason(kind: str, mode: str) -> str | None:
    if kind != "JPEG":
        return f"{kind} content behind a JPEG name, re-encoded as RGB JPEG"
    if mode == "RGB":
        return None
    if mode == "L":
        return "grayscale JPEG converted to RGB JPEG"
    return f"{mode} JPEG converted to RGB JPEG"


def central_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The central square of an image, as a (left, top, right, bottom) pixel box."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def resize_central(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size`, then the central size×size patch (section 2), in one resample."""
    return image.resize((size, size), RESAMPLE, box=central_crop_box(*image.size))


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def process(data: bytes, *, resize: int, quality: int, want_pixels: bool) -> Processed:
    """Turns raw file bytes into an RGB JPEG for a record.

    Args:
        data: the file's bytes.
        resize: 0 keeps the original bytes where they already are an RGB JPEG (others are
            re-encoded at full size); N > 0 rescales the shorter side to N and keeps the central
            N×N patch.
        quality: JPEG quality of anything re-encoded.
        want_pixels: also return the 256×256 crop for the data statistics.

    Returns:
        A Processed record.

    Raises:
        BadImageError: empty, non-image, truncated or undecodable bytes.
    """
    if not data:
        raise BadImageError("empty file")
    kind = sniff(data)
    if kind is None:
        raise BadImageError(f"not an image (starts with {data[:8]!r})")
    draft = resize or (STATS_SIZE if want_pixels else None)
    image, original_size = _open(data, kind, draft)
    repaired = _repair_reason(kind, image.mode)
    width, height = image.size
    left, top, right, bottom = central_crop_box(width, height)
    if image.mode != "RGB":
        image = image.convert("RGB")  # CMYK (Adobe-inverted handled by Pillow), L, P, RGBA
    if resize:
        output = resize_central(image, resize)
        encoded = encode_jpeg(output, quality)
        crop = (left / width, top / height, (right - left) / width, (bottom - top) / height)
        pixels = np.asarray(output) if want_pixels and resize == STATS_SIZE else None
        if want_pixels and pixels is None:
            pixels = np.asarray(resize_central(image, STATS_SIZE))
        return Processed(encoded, resize, resize, pixels, repaired, crop, original_size)
    pixels = np.asarray(resize_central(image, STATS_SIZE)) if want_pixels else None
    if repaired is None:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size  # the draft decode above may have been smaller
        return Processed(data, height, width, pixels, None, (0.0, 0.0, 1.0, 1.0), original_size)
    full = _open(data, kind, None)[0].convert("RGB")
    return Processed(
        encode_jpeg(full, quality),
        full.height,
        full.width,
        pixels,
        repaired,
        (0.0, 0.0, 1.0, 1.0),
        original_size,
    )
