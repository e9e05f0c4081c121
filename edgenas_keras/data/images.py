"""Decode any image a user's folder may hold, square-resize it, and re-encode it as a small JPEG.

Real COCO folders contain grayscale and CMYK JPEGs and the odd PNG saved under a ``.jpg`` name; Pillow
opens files by content, and everything is converted to RGB (or L for ``--grayscale``) before resizing.
A file that cannot be read or decoded raises ``BadImage`` with a short reason, which ingest records in
the quarantine list instead of stopping the run. Pure Pillow, no TensorFlow: this runs in Beam workers.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

JPEG_QUALITY = 95


class BadImage(Exception):
    """An input image that cannot be used; the message is the quarantine reason."""


def encode_jpeg(image: Image.Image) -> bytes:
    """Deterministic baseline JPEG (same pixels -> same bytes), no metadata."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return buf.getvalue()


def process_image(data: bytes, resolution: int, grayscale: bool = False) -> bytes:
    """Bytes of any Pillow-readable image -> JPEG bytes of ``resolution`` x ``resolution`` pixels.

    The image is stretched to a square, as the MLPerf Tiny VWW preprocessing does. For JPEG input,
    ``draft`` lets libjpeg decode at a reduced scale (at least twice the target), which keeps full-size
    COCO images cheap to decode.
    """
    mode = "L" if grayscale else "RGB"
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            img.draft(None, (2 * resolution, 2 * resolution))
        img.load()
    except UnidentifiedImageError:
        raise BadImage("not a readable image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"truncated or corrupt image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"image too large ({exc})") from None
    # Grayscale, CMYK, palette and alpha images all become plain RGB (or L) here.
    img = img.convert(mode).resize((resolution, resolution), Image.BILINEAR)
    return encode_jpeg(img)


def read_and_process(path: str, resolution: int, grayscale: bool = False) -> bytes:
    """Read a file and process it; a missing or unreadable file is a ``BadImage`` too."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImage("missing file") from None
    except OSError as exc:
        raise BadImage(f"unreadable file ({exc.strerror or exc})") from None
    return process_image(data, resolution, grayscale)
