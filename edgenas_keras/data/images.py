"""Decode any image a user's folder may hold, square-resize it, and re-encode it as a small JPEG.

Real COCO folders contain grayscale and CMYK JPEGs and the odd PNG saved under a ``.jpg`` name; Pillow
opens files by content, and everything is converted to 8-bit RGB (or L for ``--grayscale``) by the one
rule of ``edgenas_keras.data.pixels`` (16-bit and float samples, transparency, EXIF orientation) before
resizing.
A file that cannot be read or decoded raises ``BadImage`` with a short reason, which ingest records in
the quarantine list instead of stopping the run. Pure Pillow, no TensorFlow: this runs in Beam workers.
"""

from __future__ import annotations

import io

from PIL import Image

from edgenas_keras.data.pixels import decode_pixels

JPEG_QUALITY = 95


class BadImage(Exception):
    """An input image that cannot be used; the message is the quarantine reason."""


def encode_jpeg(image: Image.Image) -> bytes:
    """Deterministic baseline JPEG (same pixels -> same bytes), no metadata."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return buf.getvalue()


def process_image(
    data: bytes, resolution: int, grayscale: bool = False, exif_transpose: bool = False
) -> bytes:
    """Bytes of any Pillow-readable image -> JPEG bytes of ``resolution`` x ``resolution`` pixels.

    Decoding and the conversion to 8-bit RGB (or L) follow ``edgenas_keras.data.pixels.decode_pixels``
    (16-bit, 32-bit and float samples, transparency, EXIF orientation); an image it refuses raises
    ``BadImage`` with its reason. The image is then stretched to a square, as the MLPerf Tiny VWW
    preprocessing does. For JPEG input, libjpeg decodes at a reduced scale (at least twice the target),
    which keeps full-size COCO images cheap to decode.
    """
    converted = decode_pixels(data, grayscale, exif_transpose, min_size=2 * resolution)
    if not converted.ok:
        raise BadImage(converted.reason)
    img = Image.fromarray(converted.pixels).resize((resolution, resolution), Image.BILINEAR)
    return encode_jpeg(img)


def read_and_process(
    path: str, resolution: int, grayscale: bool = False, exif_transpose: bool = False
) -> bytes:
    """Read a file and process it; a missing or unreadable file is a ``BadImage`` too."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImage("missing file") from None
    except OSError as exc:
        raise BadImage(f"unreadable file ({exc.strerror or exc})") from None
    return process_image(data, resolution, grayscale, exif_transpose)
