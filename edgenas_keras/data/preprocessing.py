"""The input preprocessing of EdgeNAS models, as data: the one definition the reader computes with and the
firmware bundle states.

``PREPROCESSING``: ``x = pixel / 127.5 - 1`` on 8-bit RGB samples ([0, 255] -> [-1, 1], the MobileNet
convention), the whole image stretched to the model's square input with antialiased bilinear resizing, labels
``no_person``, ``person`` (VWW's; training records the data set's own class names as the labels, in output
order: ``edgenas_keras.train``). ``edgenas_keras.data.reader`` normalises and resizes with these constants, training
records them beside the model it exports (``metrics.json``, key ``preprocessing``), and
``edgenas_keras.tflite.bundle`` writes them into ``manifest.json``, ``<name>_model_settings.h`` and the bundle's
README. No TensorFlow here, so the bundle does not pay its import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

_EXACT_TOLERANCE = 1e-3   # in int8 steps: a float32 scale puts an exact half-step tie a few 1e-6 off


@dataclass(frozen=True)
class Preprocessing:
    """How a camera frame becomes the model's float input: ``x = pixel / pixel_divisor + pixel_offset``.

    ``pixel`` is an 8-bit sample (0..255) in ``channel_order`` (``"RGB"``, or ``"grayscale"`` for one channel:
    the ITU-R 601-2 luma that libjpeg and Pillow compute), the whole image resized to the model's input as
    ``resize`` says. ``labels`` name the classes in output order. ``None`` means "not known" (a third-party
    model whose user stated only its input range). ``source`` says where the figures come from.
    """

    pixel_divisor: float
    pixel_offset: float
    channel_order: str | None = None
    resize: str | None = None
    labels: tuple[str, ...] | None = None
    source: str = "EdgeNAS training reader (edgenas_keras/data/reader.py)"

    @property
    def input_range(self) -> tuple[float, float]:
        """The float values of pixels 0 and 255."""
        return (0.0 / self.pixel_divisor + self.pixel_offset, 255.0 / self.pixel_divisor + self.pixel_offset)

    @property
    def formula(self) -> str:
        """The rule as text, e.g. ``x = pixel / 127.5 - 1``."""
        if self.pixel_offset == 0:
            return f"x = pixel / {self.pixel_divisor:g}"
        sign = "-" if self.pixel_offset < 0 else "+"
        return f"x = pixel / {self.pixel_divisor:g} {sign} {abs(self.pixel_offset):g}"

    @classmethod
    def from_input_range(cls, lo: float, hi: float, source: str, **known) -> Preprocessing:
        """The linear map of pixels 0..255 onto [lo, hi] (``lo < hi``, both finite)."""
        return cls(255.0 / (hi - lo), float(lo), source=source, **known)

    def int8_offset(self, scale: float, zero_point: int) -> int | None:
        """The integer ``k`` for which ``q = clamp(pixel + k, -128, 127)`` is a nearest int8 value of every
        pixel's input ``x`` under the input quantisation (``scale``, ``zero_point``), or ``None`` if there is
        none (the map from pixels to int8 steps is not a unit shift).

        Ties count as nearest: ``pixel / 127.5 - 1`` at scale 1/127.5 lands every pixel half-way between
        two steps, and a float computation breaks each tie by its rounding noise; one offset breaks them all
        the same way. Among offsets that qualify, the one that clamps fewest pixels wins (``-128`` with zero
        point -1: 0..255 -> -128..127).
        """
        p = np.arange(256, dtype=np.float64)
        ideal = np.clip((p / self.pixel_divisor + self.pixel_offset) / scale + zero_point, -128.0, 127.0)
        best = None
        for k in range(int(np.floor(np.min(ideal - p))) - 1, int(np.ceil(np.max(ideal - p))) + 2):
            if np.all(np.abs(np.clip(p + k, -128, 127) - ideal) <= 0.5 + _EXACT_TOLERANCE):
                clamped = int(np.sum((p + k < -128) | (p + k > 127)))
                if best is None or clamped < best[0]:
                    best = (clamped, k)
        return None if best is None else best[1]

    def to_int8(self, pixels, scale: float, zero_point: int) -> np.ndarray:
        """uint8 pixels (any shape) -> the model's int8 input, as the firmware bundle tells firmware to do it:
        ``clamp(pixel + int8_offset)`` when that offset exists, else
        ``clamp(round((pixel / pixel_divisor + pixel_offset) / scale) + zero_point)`` in float64."""
        pixels = np.asarray(pixels)
        k = self.int8_offset(scale, zero_point)
        if k is not None:
            return np.clip(pixels.astype(np.int32) + k, -128, 127).astype(np.int8)
        x = pixels.astype(np.float64) / self.pixel_divisor + self.pixel_offset
        return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)

    def to_dict(self) -> dict:
        """JSON form (``labels`` as a list); ``from_dict`` reads it back."""
        return {"pixel_divisor": self.pixel_divisor, "pixel_offset": self.pixel_offset,
                "input_range": list(self.input_range), "formula": self.formula,
                "channel_order": self.channel_order, "resize": self.resize,
                "labels": list(self.labels) if self.labels is not None else None, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """The preprocessing recorded in a ``metrics.json`` or bundle manifest (``as_dict``'s form).

        Raises ``KeyError`` when ``pixel_divisor`` or ``pixel_offset`` is missing.
        """
        labels = d.get("labels")
        return cls(float(d["pixel_divisor"]), float(d["pixel_offset"]), d.get("channel_order"), d.get("resize"),
                   tuple(str(v) for v in labels) if labels is not None else None,
                   str(d.get("source", "recorded")))


# The VWW classes in output order: label 0 is the MLPerf Tiny ``non_person/`` folder (and a COCO image
# without a large enough person), label 1 ``person/`` (edgenas_keras.data.sources).
LABELS = ("no_person", "person")
# tf.image.resize's method for a data set written at another resolution than the model's; ingest
# (edgenas_keras.data.images) resizes with Pillow's BILINEAR, which is antialiased when shrinking too.
RESIZE_METHOD = "bilinear"
RESIZE_RULE = ("the whole image stretched to the model's input height x width (no crop, aspect ratio not "
               "kept), bilinear with antialiasing")
# The one definition of EdgeNAS models' input: the MobileNet convention, [0, 255] -> [-1, 1].
PREPROCESSING = Preprocessing(127.5, -1.0, "RGB", RESIZE_RULE, LABELS)
INPUT_RANGE = PREPROCESSING.input_range


def preprocessing(channels: int = 3) -> Preprocessing:
    """``PREPROCESSING`` for a model reading ``channels`` (3: RGB, 1: grayscale) channels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return PREPROCESSING if channels == 3 else replace(PREPROCESSING, channel_order="grayscale")
