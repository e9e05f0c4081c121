"""Every image mode Pillow opens is stored with the right 8-bit values, or quarantined with its reason.

Each image is drawn here with known sample values, usually a left half and a right half, and written in
a format that keeps its mode (PNG, TIFF, PGM, IM; 16-bit colour PNGs and TIFFs with tags Pillow cannot
write are assembled byte by byte). The expected values are those of the documented rules
(``edgenas_keras.data.pixels``): 16-bit samples keep their high byte, declared ranges are cut into 256
equal bins, transparency is composited over white, EXIF orientation is raw unless asked for.
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edgenas_keras.data.images import BadImage, process_image
from edgenas_keras.data.pixels import convert_image, decode_pixels
from edgenas_keras.data.records import STATS_FILE
from pipeline.cli import main

W, H = 16, 8  # every drawn image: left half columns 0-7, right half 8-15


def halves(left, right, dtype=np.uint8) -> np.ndarray:
    """An [H, W] or [H, W, C] array whose left half is ``left`` and right half ``right``."""
    left, right = np.asarray(left, dtype), np.asarray(right, dtype)
    out = np.empty((H, W, *left.shape), dtype)
    out[:, : W // 2], out[:, W // 2 :] = left, right
    return out


def saved(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16(arr: np.ndarray, color_type: int, trns: tuple | None = None) -> bytes:
    """A 16-bit PNG (colour type 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA): Pillow cannot write these."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, color_type, 0, 0, 0))
    if trns is not None:
        out += chunk(b"tRNS", struct.pack(f">{len(trns)}H", *trns))
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def tiff(
    data: bytes, bits: int, spp: int = 1, photometric: int = 1, sample_format: int = 1, srange=None
) -> bytes:
    """A little-endian, uncompressed, one-strip TIFF of W x H pixels around ``data`` (already packed).

    ``srange`` = (SMinSampleValue, SMaxSampleValue) written as DOUBLEs, the range a file declares.
    """
    entries = {  # tag: (type, values); SHORT=3, LONG=4, DOUBLE=12
        256: (4, [W]),
        257: (4, [H]),
        258: (3, [bits] * spp),
        259: (3, [1]),
        262: (3, [photometric]),
        273: (4, [8]),
        277: (3, [spp]),
        278: (4, [H]),
        279: (4, [len(data)]),
        284: (3, [1]),
        339: (3, [sample_format] * spp),
    }
    if srange is not None:
        entries[340], entries[341] = (12, [srange[0]] * spp), (12, [srange[1]] * spp)
    fmt = {3: "H", 4: "I", 12: "d"}
    ifd_at = 8 + len(data) + len(data) % 2
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag in sorted(entries):
        kind, values = entries[tag]
        packed = struct.pack(f"<{len(values)}{fmt[kind]}", *values)
        if len(packed) <= 4:
            field = packed.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", extra_at + len(extra))
            extra += packed
        ifd += struct.pack("<HHI", tag, kind, len(values)) + field
    return (
        b"II*\x00" + struct.pack("<I", ifd_at) + data.ljust(ifd_at - 8, b"\x00") + ifd + b"\0\0\0\0" + extra
    )


def pack12(arr: np.ndarray) -> bytes:
    """12-bit samples packed two per three bytes, most significant bits first (TIFF FillOrder 1)."""
    v = arr.astype(np.uint32).reshape(-1, 2)
    return (
        np.stack([v[:, 0] >> 4, (v[:, 0] & 15) << 4 | v[:, 1] >> 8, v[:, 1] & 255], 1)
        .astype(np.uint8)
        .tobytes()
    )


def exif_jpeg(orientation: int) -> bytes:
    """A 32 x 16 JPEG whose left half is dark (30) and right half bright (220), EXIF orientation tag set."""
    arr = np.full((16, 32), 30, np.uint8)
    arr[:, 16:] = 220
    exif = Image.Exif()
    exif[0x0112] = orientation
    return saved(Image.fromarray(arr).convert("RGB"), "JPEG", quality=95, exif=exif)


def im_file(mode: str, arr: np.ndarray) -> bytes:
    """Pillow's IM format, which keeps modes no other writer keeps (YCbCr)."""
    return saved(Image.fromarray(arr, mode) if arr.ndim == 3 else Image.fromarray(arr), "IM")


GREY16 = halves(8192, 32768, np.uint16)  # the case of ../shared/cases/grey16.png

# name -> (file bytes, expected left value, expected right value); values are RGB triples (or a grey level)
CONVERTED = {
    "1 (bilevel PNG)": (lambda: saved(Image.fromarray(halves(0, 255)).convert("1"), "PNG"), 0, 255),
    "L (grey PNG)": (lambda: saved(Image.fromarray(halves(40, 200)), "PNG"), 40, 200),
    "P (palette PNG)": (
        lambda: saved(_palette(), "PNG"),
        (10, 20, 30),
        (200, 100, 50),
    ),
    "P with transparency (PNG tRNS): transparent index over white": (
        lambda: saved(_palette(), "PNG", transparency=1),
        (10, 20, 30),
        255,
    ),
    "P with transparency (GIF)": (lambda: saved(_palette(), "GIF", transparency=1), (10, 20, 30), 255),
    "LA (PNG): opaque grey, half-transparent black over white": (
        lambda: saved(Image.fromarray(halves((100, 255), (0, 128)), "LA"), "PNG"),
        100,
        127,  # (0 * 128 + 255 * 127) / 255
    ),
    "RGBA (PNG): fully transparent right half is white": (
        lambda: saved(Image.fromarray(halves((200, 0, 0, 255), (0, 0, 0, 0)), "RGBA"), "PNG"),
        (200, 0, 0),
        255,
    ),
    "RGB with a colour key (PNG tRNS)": (
        lambda: saved(Image.fromarray(halves((0, 90, 0), (1, 2, 3))), "PNG", transparency=(1, 2, 3)),
        (0, 90, 0),
        255,
    ),
    "CMYK (TIFF), Pillow's formula": (
        lambda: saved(Image.fromarray(halves((255, 0, 0, 0), (0, 0, 0, 255)), "CMYK"), "TIFF"),
        (0, 255, 255),
        0,
    ),
    "CMYK (Adobe JPEG)": (
        lambda: saved(Image.fromarray(halves((0, 0, 0, 0), (0, 0, 0, 255)), "CMYK"), "JPEG", quality=95),
        255,
        0,
    ),
    "YCbCr (IM)": (lambda: im_file("YCbCr", halves((100, 128, 128), (200, 128, 128))), 100, 200),
    "LAB (CIELab TIFF): L* 53.3 is sRGB mid-grey, L* 100 white": (
        lambda: saved(Image.fromarray(halves((136, 0, 0), (255, 0, 0)), "LAB"), "TIFF"),
        128,
        255,
    ),
    "I;16 (16-bit grey PNG)": (lambda: saved(Image.fromarray(GREY16), "PNG"), 32, 128),
    "I;16 (16-bit grey TIFF, little-endian)": (lambda: saved(Image.fromarray(GREY16), "TIFF"), 32, 128),
    "I;16B (16-bit grey TIFF, big-endian)": (
        lambda: saved(Image.frombytes("I;16B", (W, H), GREY16.astype(">u2").tobytes()), "TIFF"),
        32,
        128,
    ),
    "I;16L (IM)": (
        lambda: saved(Image.frombytes("I;16L", (W, H), GREY16.astype("<u2").tobytes()), "IM"),
        32,
        128,
    ),
    "I;16 with a 16-bit grey key (PNG tRNS)": (
        lambda: png16(halves(8192, 1000, np.uint16), 0, trns=(1000,)),
        32,
        255,
    ),
    "12-bit grey TIFF (opened as I;16, scaled by its bit depth)": (
        lambda: tiff(pack12(halves(1024, 3072, np.uint16)), 12),
        64,
        192,
    ),
    "16-bit WhiteIsZero TIFF (inverted)": (
        lambda: tiff(halves(8192, 32768, np.uint16).astype("<u2").tobytes(), 16, photometric=0),
        223,  # (65535 - 8192) >> 8
        127,  # (65535 - 32768) >> 8
    ),
    "16-bit RGB PNG (Pillow reads the high byte)": (
        lambda: png16(halves((51528, 2570, 65535), (8192, 32768, 0), np.uint16), 2),
        (201, 10, 255),
        (32, 128, 0),
    ),
    "16-bit RGBA PNG": (
        lambda: png16(halves((32768, 8192, 0, 65535), (0, 0, 0, 0), np.uint16), 6),
        (128, 32, 0),
        255,
    ),
    "16-bit grey+alpha PNG": (
        lambda: png16(halves((32768, 65535), (0, 0), np.uint16), 4),
        128,
        255,
    ),
    "16-bit RGB TIFF (Pillow reads the high byte)": (
        lambda: tiff(
            halves((51528, 2570, 65535), (8192, 32768, 0), np.uint16).astype("<u2").tobytes(), 16, 3, 2
        ),
        (201, 10, 255),
        (32, 128, 0),
    ),
    "16-bit PGM (maxval 65535, opened as I)": (lambda: saved(Image.fromarray(GREY16), "PPM"), 32, 128),
    "12-bit PGM (maxval 4095, Pillow rescales)": (
        lambda: b"P5 16 8 4095\n" + halves(1024, 3072, np.uint16).astype(">u2").tobytes(),
        64,
        192,
    ),
    "I (32-bit int TIFF) with a declared range [0, 1000]": (
        lambda: tiff(
            halves(250, 750, np.int32).astype("<i4").tobytes(), 32, sample_format=2, srange=(0, 1000)
        ),
        63,  # floor(250 * 256 / 1001)
        191,  # floor(750 * 256 / 1001)
    ),
    "F (float TIFF) with a declared range [0, 1]": (
        lambda: tiff(
            halves(0.25, 1.0, np.float32).astype("<f4").tobytes(), 32, sample_format=3, srange=(0, 1)
        ),
        64,
        255,
    ),
    "L with a grey key (PNG tRNS): black is transparent": (
        lambda: saved(Image.fromarray(halves(0, 100)), "PNG", transparency=0),
        255,
        100,
    ),
}

# The mode Pillow opens each of those files in (what the conversion has to deal with).
OPENED_AS = [
    "1", "L", "P", "P", "P", "LA", "RGBA", "RGB", "CMYK", "CMYK", "YCbCr", "LAB", "I;16", "I;16", "I;16B",
    "I;16L", "I;16", "I;16", "I;16", "RGB", "RGBA", "RGBA", "RGB", "I", "I", "I", "F", "L",
]  # fmt: skip
assert len(OPENED_AS) == len(CONVERTED)


QUARANTINED = {
    "I (32-bit int TIFF), no declared range": (
        lambda: saved(Image.fromarray(halves(250, 750, np.int32)), "TIFF"),
        "32-bit signed integer samples (TIFF, mode I) without a declared value range",
    ),
    "I (signed 16-bit TIFF), no declared range": (
        lambda: tiff(halves(-5, 700, np.int16).astype("<i2").tobytes(), 16, sample_format=2),
        "16-bit signed integer samples (TIFF, mode I) without a declared value range",
    ),
    "F (float TIFF), no declared range": (
        lambda: saved(Image.fromarray(halves(0.25, 0.75, np.float32)), "TIFF"),
        "floating-point samples (TIFF, mode F) without a declared value range",
    ),
    "F (float TIFF) outside its declared range": (
        lambda: tiff(
            halves(0.5, 1.5, np.float32).astype("<f4").tobytes(), 32, sample_format=3, srange=(0, 1)
        ),
        "samples span [0.5, 1.5], outside the range [0, 1]; not clipped",
    ),
    "F (float TIFF) with NaN": (
        lambda: tiff(
            halves(0.5, np.nan, np.float32).astype("<f4").tobytes(), 32, sample_format=3, srange=(0, 1)
        ),
        "NaN or infinite samples",
    ),
    "I (IM, 32-bit int)": (
        lambda: saved(Image.fromarray(halves(250, 750, np.int32)), "IM"),
        "32-bit integer samples (IM, mode I) without a declared value range",
    ),
    "16-bit RGB PNG with a colour key": (
        lambda: png16(halves((100, 2, 3), (51528, 2570, 65535), np.uint16), 2, trns=(51528, 2570, 65535)),
        "16-bit colour image with a transparent colour key",
    ),
}


def _palette() -> Image.Image:
    img = Image.fromarray(halves(0, 1), "L").convert("P")
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    return img


def as_rgb(value) -> np.ndarray:
    return np.array(value if isinstance(value, tuple) else (value,) * 3, np.float64)


@pytest.mark.parametrize("name, mode", zip(CONVERTED, OPENED_AS))
def test_conversion_scales_every_mode(name, mode):
    data, left, right = CONVERTED[name]
    assert Image.open(io.BytesIO(data())).mode == mode
    got = decode_pixels(data())
    assert got.ok, got.reason
    px = got.pixels
    assert px.dtype == np.uint8 and px.shape == (H, W, 3)
    # lossless formats must match exactly; JPEG has its error, Lab -> sRGB rounds through floats
    tol = 3 if "JPEG" in name else 1 if "LAB" in name else 0
    np.testing.assert_allclose(px[:, : W // 2].reshape(-1, 3).mean(0), as_rgb(left), atol=tol)
    np.testing.assert_allclose(px[:, W // 2 :].reshape(-1, 3).mean(0), as_rgb(right), atol=tol)


@pytest.mark.parametrize("name", list(QUARANTINED))
def test_conversion_quarantines_with_the_reason(name):
    data, reason = QUARANTINED[name]
    assert Image.open(io.BytesIO(data())).mode in ("I", "F", "RGB")
    got = decode_pixels(data())
    assert got.pixels is None and reason in got.reason
    with pytest.raises(BadImage, match="without a declared|outside|NaN|colour key"):
        process_image(data(), 8)


def test_the_shared_grey16_case_and_grayscale_output():
    """../shared/cases/grey16.png drawn again: 8192 | 32768 was stored all white; now 32 | 128."""
    data = saved(Image.fromarray(GREY16), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    grey = decode_pixels(data, grayscale=True).pixels
    assert (
        grey.shape == (H, W) and set(np.unique(grey[:, :8])) == {32} and set(np.unique(grey[:, 8:])) == {128}
    )
    # grayscale output of colour modes is the ITU-R 601-2 luma of the composited RGB
    rgba = saved(Image.fromarray(halves((200, 0, 0, 255), (0, 0, 0, 0)), "RGBA"), "PNG")
    lum = decode_pixels(rgba, grayscale=True).pixels
    assert lum.shape == (H, W) and lum[0, 0] == 60 and lum[0, 15] == 255  # 200 * 0.299 = 59.8


def test_hsv_and_premultiplied_modes_from_memory():
    """HSV, La and RGBa have no writer in Pillow; images in those modes still convert by the same rule."""
    hsv = convert_image(Image.fromarray(halves((0, 255, 255), (0, 0, 200)), "HSV")).pixels
    assert tuple(hsv[0, 0]) == (255, 0, 0) and tuple(hsv[0, 15]) == (200, 200, 200)
    rgba_pre = convert_image(Image.fromarray(halves((100, 0, 0, 255), (0, 0, 0, 0)), "RGBa")).pixels
    assert tuple(rgba_pre[0, 0]) == (100, 0, 0) and tuple(rgba_pre[0, 15]) == (255, 255, 255)


def test_exif_orientation_raw_by_default_transposed_on_request():
    """Orientation 6 (display rotated 90 degrees clockwise): the dark left half becomes the top half."""
    data = exif_jpeg(6)
    raw = decode_pixels(data, grayscale=True).pixels
    assert raw.shape == (16, 32)
    assert raw[:, :14].mean() < 40 and raw[:, 18:].mean() > 210
    up = decode_pixels(data, grayscale=True, exif_transpose=True).pixels
    assert up.shape == (32, 16)
    assert up[:14].mean() < 40 and up[18:].mean() > 210


def read_images(out) -> dict:
    files = sorted(str(p) for p in out.glob("Split-*/*.gz"))
    rows = {}
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        rows[f["image/source_id"].bytes_list.value[0].decode()] = tf.io.decode_jpeg(
            f["image/encoded"].bytes_list.value[0]
        ).numpy()
    return rows


def ingest(folder, out, *extra) -> dict:
    args = ["data", "ingest", "--source", "mlperf-tiny", "--images", str(folder), "--out", str(out)]
    assert main(args + ["--resolution", "32", "--direct-num-workers", "1", "--json", *extra]) == 0
    return json.loads((out / STATS_FILE).read_text())


E2E = [
    "I;16 (16-bit grey PNG)",
    "I;16B (16-bit grey TIFF, big-endian)",
    "12-bit grey TIFF (opened as I;16, scaled by its bit depth)",
    "16-bit RGB PNG (Pillow reads the high byte)",
    "P with transparency (PNG tRNS): transparent index over white",
    "RGBA (PNG): fully transparent right half is white",
    "CMYK (TIFF), Pillow's formula",
    "F (float TIFF) with a declared range [0, 1]",
]
E2E_QUARANTINED = ["I (32-bit int TIFF), no declared range", "F (float TIFF), no declared range"]


@pytest.mark.slow
def test_ingest_end_to_end_stores_scaled_pixels_and_quarantines_with_reasons(tmp_path, capsys):
    """``edgenas data ingest --source mlperf-tiny`` on a folder of these images, through Beam."""
    folder = tmp_path / "in"
    names = {}
    for sub in ("person", "non_person"):
        (folder / sub).mkdir(parents=True)
    for i, name in enumerate(E2E + E2E_QUARANTINED):
        data = (CONVERTED.get(name) or QUARANTINED[name])[0]()
        fmt = Image.open(io.BytesIO(data)).format
        fname = f"img{i}.{'tif' if fmt == 'TIFF' else 'png'}"
        (folder / ("person" if i % 2 else "non_person") / fname).write_bytes(data)
        names[name] = f"{'person' if i % 2 else 'non_person'}/{fname}"
    (folder / "person" / "rotated.jpg").write_bytes(exif_jpeg(6))
    out = tmp_path / "out"
    stats = ingest(folder, out)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["options"]["exif_transpose"] is False
    assert sum(stats["written"].values()) == len(E2E) + 1
    reasons = {q["file"].split("/in/", 1)[1]: q["reason"] for q in stats["quarantined"]}
    assert reasons == {names[n]: decode_pixels(QUARANTINED[n][0]()).reason for n in E2E_QUARANTINED}
    assert printed["quarantined"] == stats["quarantined"]
    assert "without a declared value range" in reasons[names["F (float TIFF), no declared range"]]

    rows = read_images(out)
    for name in E2E:
        _, left, right = CONVERTED[name]
        img = rows[names[name]].astype(np.float64)  # 32 x 32 x 3 after the square resize; JPEG error
        assert img.shape == (32, 32, 3)
        np.testing.assert_allclose(img[:, 2:13].reshape(-1, 3).mean(0), as_rgb(left), atol=3, err_msg=name)
        np.testing.assert_allclose(img[:, 19:30].reshape(-1, 3).mean(0), as_rgb(right), atol=3, err_msg=name)
    raw = rows["person/rotated.jpg"].mean(2)
    assert raw[:, :13].mean() < 40 and raw[:, 19:].mean() > 210  # raw orientation: dark left half

    # --exif-transpose reaches the Beam workers: the same image is stored upright (dark top half)
    out2 = tmp_path / "out2"
    stats2 = ingest(folder, out2, "--exif-transpose")
    assert stats2["options"]["exif_transpose"] is True
    up = read_images(out2)["person/rotated.jpg"].mean(2)
    assert up[:13].mean() < 40 and up[19:].mean() > 210
    left16 = read_images(out2)[names["I;16 (16-bit grey PNG)"]]  # other images are not affected
    assert abs(left16[:, 2:13].mean() - 32) < 3


@pytest.mark.slow
def test_pipeline_config_exif_transpose_reaches_the_ingest(tmp_path):
    """``data.exif_transpose`` in a pipeline config goes through VwwExampleGen's ingest to the workers."""
    from components.example_gen import make_examples
    from pipeline.config import loads

    folder = tmp_path / "in"
    for sub in ("person", "non_person"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "rotated.jpg").write_bytes(exif_jpeg(6))
    for flag, dark_top in (("false", False), ("true", True)):
        text = (
            f"data: {{source: mlperf-tiny, images: ['{folder}'], resolution: 32, exif_transpose: {flag}}}\n"
            "budgets: {latency_ms: 100, sram_bytes: 100000, flash_bytes: 200000}\n"
        )
        data = loads(text, "t.yaml").to_dict()["data"]
        out = tmp_path / f"out-{flag}"
        stats = make_examples(str(out), {**data, "direct_num_workers": 1}, [])
        assert stats["options"]["exif_transpose"] is dark_top
        img = read_images(out)["person/rotated.jpg"].mean(2)
        top, left = img[:13].mean(), img[:, :13].mean()
        assert (top < 40) if dark_top else (left < 40 and top > 100)
