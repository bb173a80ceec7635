"""Image facts and thumbnails with Pillow. CPU-bound: callers run :func:`thumbnail` in a thread.

Safety: the pixel count is checked from the header before any pixel is decoded (a small file
can declare a huge canvas: a decompression bomb), and Pillow's own ``MAX_IMAGE_PIXELS`` guard
is set to the same limit. Thumbnails are new images built from the pixels only, with the EXIF
orientation applied first, so no metadata (EXIF, GPS, ICC comments) reaches them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from parley.errors import InvalidRequest, UnsupportedMediaType


@dataclass(frozen=True, slots=True)
class ImageFacts:
    width: int
    height: int
    thumbnail: bytes
    thumbnail_type: str
    thumbnail_width: int
    thumbnail_height: int


def thumbnail(data: bytes, *, max_side: int, max_pixels: int) -> ImageFacts:
    """The image's displayed size and a thumbnail whose longest side is at most ``max_side``.

    Raises ``InvalidRequest`` for an image over ``max_pixels`` and ``UnsupportedMediaType``
    for bytes Pillow cannot decode (a broken file behind a valid magic number).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise InvalidRequest(
                        f"the image is {w}x{h} pixels; at most {max_pixels} pixels are accepted"
                    )
                img.seek(0)  # the first frame of an animation
                oriented = ImageOps.exif_transpose(img)
                width, height = oriented.size
                has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                    oriented.mode == "P" and "transparency" in oriented.info
                )
                small = oriented.convert("RGBA" if has_alpha else "RGB")
                small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                # A fresh image holds only pixels: nothing of the original's metadata.
                clean = Image.new(small.mode, small.size)
                clean.paste(small)
                out = io.BytesIO()
                if has_alpha:
                    clean.save(out, "PNG", optimize=True)
                    kind = "image/png"
                else:
                    clean.save(out, "JPEG", quality=85, optimize=True)
                    kind = "image/jpeg"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(
            f"the image has more than {max_pixels} pixels (a decompression bomb?)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnsupportedMediaType(f"the image could not be decoded: {exc}"[:300]) from None
    return ImageFacts(width, height, out.getvalue(), kind, clean.width, clean.height)


def fit_for_model(
    data: bytes, media_type: str, *, max_side: int, max_bytes: int, max_pixels: int
) -> tuple[str, bytes] | None:
    """An image as a model should get it: the original when its longest side and size are
    within ``max_side`` and ``max_bytes``, else a smaller copy (orientation applied, no
    metadata); None when even that is over ``max_bytes`` or the image cannot be read."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > max_pixels:
                    return None
                if len(data) <= max_bytes and max(img.size) <= max_side:
                    return media_type, data
                img.seek(0)
                oriented = ImageOps.exif_transpose(img)
                has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (
                    oriented.mode == "P" and "transparency" in oriented.info
                )
                small = oriented.convert("RGBA" if has_alpha else "RGB")
                small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                if has_alpha:
                    small.save(out, "PNG", optimize=True)
                    kind = "image/png"
                else:
                    small.save(out, "JPEG", quality=85, optimize=True)
                    kind = "image/jpeg"
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    ):
        return None
    smaller = out.getvalue()
    return (kind, smaller) if len(smaller) <= max_bytes else None
