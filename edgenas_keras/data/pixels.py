"""One rule for turning any image Pillow opens into 8-bit RGB (or L) pixels, or a reason to quarantine it.

Every ingest path (COCO folders, MLPerf Tiny folders; the CLI, the Beam workers and the TFX component)
decodes through ``decode_pixels``, so an image is stored the same way whatever source it came from.
Pure Pillow and numpy: this runs in Beam workers, without TensorFlow or Beam.

The rules, per Pillow mode (``convert_image`` documents the same table):

- ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``YCbCr``, ``HSV``, ``LAB`` (CIELab TIFF), ``CMYK``: Pillow's own
  conversion to RGB (``CMYK`` uses Pillow's formula, no colour management; embedded ICC profiles are not
  applied to any image, as in TensorFlow's decoders). Grayscale output (``--grayscale``) takes the
  ITU-R 601-2 luma of the RGB image (Pillow's ``L`` conversion); grey sources stay as they are.
- **More than 8 bits per sample.** A sample ``v`` whose range is ``[lo, hi]`` becomes the 8-bit level
  ``floor(256 (v - lo) / (hi - lo + 1))`` (integers) or ``min(255, floor(256 (v - lo) / (hi - lo)))``
  (floats): 256 equal bins. For full-range 16-bit samples that is the high byte, ``v >> 8`` (within one
  level of ``round(v / 257)``), which is also what Pillow itself does when it opens 16-bit colour PNG and
  TIFF files as ``RGB``/``RGBA`` and what TensorFlow's ``decode_png(dtype=uint8)`` and
  ``convert_image_dtype`` do, so every 16-bit image follows one rule. The range:

  - ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grey PNG, TIFF, ...): ``[0, 2**bits - 1]`` with
    ``bits`` the TIFF ``BitsPerSample`` (Pillow opens 12-bit TIFFs as ``I;16`` without rescaling), else
    16. A TIFF stored ``WhiteIsZero`` is inverted (Pillow does not invert 16-bit ones).
  - ``I`` (32-bit signed integer, and signed 16-bit TIFF) and ``F`` (32-bit float): only the range the
    file declares, TIFF ``SMinSampleValue``/``SMaxSampleValue``; a 16-bit PGM (Pillow rescales it to
    ``[0, 65535]``) is the one other case with a defined range. Without one the image is quarantined:
    such files hold measurements (depth, HDR radiance, scientific data) and no display range is
    defined, so any guess (the data's own min and max, ``[0, 1]``, ``[0, 255]``) could be wrong.
  - A sample outside its range (or a NaN or infinite float) quarantines the image: never clipped.

- **Transparency** (an alpha band, ``LA``, ``PA``, ``RGBA``, ``RGBa``; a palette or colour-key
  transparency; a 16-bit grey colour key): composited over a **white** background (255), the way an
  image viewer on a white page shows it, with ``out = (c a + 255 (255 - a)) / 255`` rounded. A 16-bit
  colour PNG with a colour key is quarantined: Pillow reads it at 8 bits, so the key cannot be matched.
- **EXIF orientation**: kept raw by default (the reference VWW builder copies the file's pixels as
  decoded, and COCO annotations refer to them); ``exif_transpose=True`` applies the orientation tag
  (1-8) the way ``PIL.ImageOps.exif_transpose`` does. An unreadable EXIF block with
  ``exif_transpose=True`` quarantines the image.
- A multi-frame file (animated GIF/PNG/WebP, multi-page TIFF) contributes its first frame.
- Any other mode, or a conversion Pillow refuses, is quarantined with the mode in the reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

BACKGROUND = 255  # what transparent pixels are composited over (white), in every channel

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
# Modes Pillow converts to RGB by its own (exact or documented) formulas.
PILLOW_RGB_MODES = ("1", "L", "P", "RGB", "RGBX", "YCbCr", "HSV", "LAB", "CMYK")

# TIFF tags (TIFF 6.0): BitsPerSample, PhotometricInterpretation, SampleFormat, SMin/SMaxSampleValue.
_BITS, _PHOTOMETRIC, _SAMPLE_FORMAT, _SMIN, _SMAX = 258, 262, 339, 340, 341

# EXIF orientation -> the transpose that shows the image upright (PIL.ImageOps.exif_transpose's table).
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Converted:
    """The result of a conversion: ``pixels`` (uint8, ``[H, W, 3]`` RGB or ``[H, W]`` L) or ``reason``.

    Exactly one of the two is set; ``reason`` is the one-line quarantine reason.
    """

    pixels: np.ndarray | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image converted (``reason`` is None); False when it was quarantined."""
        return self.reason is None


class _Quarantine(Exception):
    pass


def decode_pixels(
    data: bytes, grayscale: bool = False, exif_transpose: bool = False, min_size: int | None = None
) -> Converted:
    """Bytes of any image file -> ``Converted`` (8-bit pixels, or the reason the image cannot be used).

    ``min_size``: for JPEG input, let libjpeg decode at a reduced scale that keeps both sides at least
    this large (``Image.draft``); full-size COCO images stay cheap to decode. Undecodable, truncated or
    oversized files are reasons too (``Image.MAX_IMAGE_PIXELS`` guards against decompression bombs).
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG" and min_size:
            img.draft(None, (min_size, min_size))
        rawmode = _rawmode(img)
        img.load()
    except UnidentifiedImageError:
        return Converted(reason="not a readable image format")
    except Image.DecompressionBombError as exc:
        return Converted(reason=f"image too large ({exc})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return Converted(reason=f"truncated, corrupt or unsupported image ({exc})")
    return convert_image(img, grayscale, exif_transpose, rawmode)


def _rawmode(img: Image.Image) -> str:
    """How the decoder unpacks the file (e.g. ``RGB;16B``: 16-bit samples read as 8); read before load."""
    if not img.tile:
        return ""
    args = img.tile[0].args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def convert_image(
    img: Image.Image, grayscale: bool = False, exif_transpose: bool = False, rawmode: str = ""
) -> Converted:
    """An image as Pillow opened it -> 8-bit RGB (or L with ``grayscale``) pixels, or a quarantine reason.

    The rules are in this module's docstring (scaling of 16-bit, 32-bit and float samples; transparency
    over white; EXIF orientation kept raw unless ``exif_transpose``). ``rawmode`` is the decoder's raw
    mode read before ``load`` (``decode_pixels`` passes it): it tells a 16-bit colour PNG from an 8-bit one.
    Never raises for a bad image: every refusal is ``Converted(reason=...)``.
    """
    try:
        method = _orientation(img) if exif_transpose else None
        pixels = _to_uint8(img, grayscale, rawmode)
    except _Quarantine as exc:
        return Converted(reason=str(exc))
    if method is not None:
        pixels = np.asarray(Image.fromarray(pixels).transpose(method))
    return Converted(pixels=np.ascontiguousarray(pixels))


def _orientation(img: Image.Image):
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as exc:  # Pillow raises several types for a damaged EXIF block
        raise _Quarantine(
            f"EXIF block unreadable, orientation unknown ({type(exc).__name__}: {exc})"
        ) from None
    return ORIENTATION_TRANSPOSE.get(value)


def _to_uint8(img: Image.Image, grayscale: bool, rawmode: str) -> np.ndarray:
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        grey, alpha = _sixteen_bit(img)
        return _finish(grey, alpha, grayscale)
    if mode in ("I", "F"):
        return _finish(_declared_range(img), None, grayscale)
    if ";16" in rawmode and "transparency" in img.info:
        raise _Quarantine(
            f"16-bit colour image with a transparent colour key: Pillow reads it as 8-bit {mode}, so the "
            "key cannot be matched; save it with an alpha channel or at 8 bits"
        )
    try:
        if img.has_transparency_data:
            if mode in ("LA", "La", "PA") or (mode in ("L", "1") and "transparency" in img.info):
                la = np.asarray(img.convert("LA"))
                return _finish(la[..., 0], la[..., 1], grayscale)
            rgba = np.asarray(img.convert("RGBA"))
            return _finish(rgba[..., :3], rgba[..., 3], grayscale)
        if mode in ("1", "L"):
            return _finish(np.asarray(img.convert("L")), None, grayscale)
        if mode in PILLOW_RGB_MODES:
            return _finish(np.asarray(img.convert("RGB")), None, grayscale)
    except ValueError as exc:  # "conversion from X to Y not supported"
        raise _Quarantine(f"image mode {mode} cannot be converted to RGB ({exc})") from None
    raise _Quarantine(f"image mode {mode} is not supported")


def _finish(values: np.ndarray, alpha: np.ndarray | None, grayscale: bool) -> np.ndarray:
    """uint8 grey ``[H, W]`` or RGB ``[H, W, 3]`` (+ alpha ``[H, W]``) -> composited output of the right kind."""
    if alpha is not None:
        a = alpha.astype(np.uint32)
        if values.ndim == 3:
            a = a[..., None]
        values = ((values.astype(np.uint32) * a + BACKGROUND * (255 - a) + 127) // 255).astype(np.uint8)
    if grayscale and values.ndim == 3:
        return np.asarray(Image.fromarray(values, "RGB").convert("L"))
    if not grayscale and values.ndim == 2:
        return np.repeat(values[..., None], 3, axis=2)
    return values


def _tiff_tag(img: Image.Image, tag: int):
    tags = getattr(img, "tag_v2", None)
    if tags is None or tag not in tags:
        return None
    value = tags[tag]
    return value[0] if isinstance(value, tuple) else value


def bins(values: np.ndarray, lo: float, hi: float, integer: bool) -> np.ndarray:
    """Samples of the range ``[lo, hi]`` -> 8-bit levels, 256 equal bins (see the module docstring).

    Integers: ``floor(256 (v - lo) / (hi - lo + 1))`` (``v >> 8`` for ``[0, 65535]``); floats:
    ``min(255, floor(256 (v - lo) / (hi - lo)))``. The caller has checked ``lo <= v <= hi``.
    """
    v = values.astype(np.float64) - lo
    width = (hi - lo + 1) if integer else (hi - lo)
    return np.minimum(255, np.floor(v * 256.0 / width)).astype(np.uint8)


def _check_range(values: np.ndarray, lo: float, hi: float, what: str) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise _Quarantine(f"{what}: NaN or infinite samples")
    vmin, vmax = values.min(), values.max()
    if vmin < lo or vmax > hi:
        raise _Quarantine(
            f"{what}: samples span [{vmin:g}, {vmax:g}], outside the range [{lo:g}, {hi:g}]; not clipped"
        )


def _sixteen_bit(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    raw = np.asarray(img).astype(np.int64)
    bits = _tiff_tag(img, _BITS) if img.format == "TIFF" else None
    bits = int(bits) if bits else 16
    hi = 2**bits - 1
    what = f"{bits}-bit grey image ({img.mode})"
    _check_range(raw, 0, hi, what)
    values = hi - raw if img.format == "TIFF" and _tiff_tag(img, _PHOTOMETRIC) == 0 else raw
    alpha = None
    key = img.info.get("transparency")
    if isinstance(key, int):  # a PNG tRNS grey key holds the 16-bit sample value
        alpha = np.where(raw == key, 0, 255).astype(np.uint8)
    return bins(values, 0, hi, integer=True), alpha


def _declared_range(img: Image.Image) -> np.ndarray:
    values = np.asarray(img)
    kind = "floating-point" if img.mode == "F" else "32-bit integer"
    if img.format == "TIFF":
        bits = _tiff_tag(img, _BITS)
        signed = _tiff_tag(img, _SAMPLE_FORMAT) == 2
        kind = "floating-point" if img.mode == "F" else f"{bits}-bit {'signed ' if signed else ''}integer"
    what = f"{kind} samples ({img.format or 'unknown format'}, mode {img.mode})"
    if img.format == "PPM" and img.mode == "I":  # Pillow rescales PGM maxval > 255 to [0, 65535]
        lo, hi = 0, 65535
    else:
        lo, hi = _tiff_tag(img, _SMIN), _tiff_tag(img, _SMAX)
        if lo is None or hi is None or not hi > lo:
            raise _Quarantine(
                f"{what} without a declared value range (TIFF SMinSampleValue/SMaxSampleValue): "
                "no display range is defined; save it as 8- or 16-bit unsigned, or declare the range"
            )
    _check_range(values, lo, hi, what)
    return bins(values, lo, hi, integer=img.mode == "I")
