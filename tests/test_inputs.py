"""ensemble_cnn.inference.images, .arrays and .paths: reading users' image and array files safely (real files written in tmp_path)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import ensemble_cnn
from ensemble_cnn.errors import InputError
from ensemble_cnn.inference import arrays, images
from ensemble_cnn.inference.arrays import read_arrays
from ensemble_cnn.inference.images import MAX_IMAGE_PIXELS, decode_image, read_image
from ensemble_cnn.inference.paths import ARRAY_SUFFIXES, IMAGE_SUFFIXES, classify_path, expand_paths, load_inputs
from ensemble_cnn.inference.preprocess import preprocess_digits

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


# ----------------------------------------------------------------------------- helpers


def digit(height: int = 60, width: int = 50, *, top: int = 12, left: int = 15) -> np.ndarray:
    """A binary, digit-like shape (white ink on black, uint8): a '7' with a bar across."""
    image = np.zeros((height, width), np.uint8)
    image[top : top + 4, left : left + 22] = 255  # the top stroke
    for step in range(30):  # the diagonal
        row, col = top + 4 + step, left + 21 - step // 2
        image[row, col - 3 : col + 1] = 255
    image[top + 16 : top + 19, left + 8 : left + 20] = 255  # the bar
    return image


def save(array: np.ndarray, path: Path, fmt: str | None = None, **options) -> Path:
    Image.fromarray(array).save(path, fmt, **options)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(call, *args, names: str | Path, words: str = "", **kwargs) -> str:
    """Call, expect InputError; check the message is one line naming the file and holding ``words``."""
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(str(names)), message
    assert words in message, message
    return message


def png_bytes(width: int, height: int, *, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    """A valid all-zero PNG of any claimed size, built row by row (a 1-bit 8000x8000 PNG is ~8 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def claim_huge_ihdr(data: bytes, *, width: int, height: int) -> bytes:
    """A small PNG whose IHDR (with a correct CRC) claims ``width`` x ``height``."""
    ihdr = data[16:29]
    forged = struct.pack(">II", width, height) + ihdr[8:]
    return data[:16] + forged + struct.pack(">I", zlib.crc32(b"IHDR" + forged)) + data[33:]


def idx_bytes(images: np.ndarray, *, magic: int = 0x00000803) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    return magic.to_bytes(4, "big") + dims + images.astype(np.uint8).tobytes()


def npy_header_only(path: Path, *, shape: tuple[int, ...], descr: str = "|u1", tail: bytes = b"\x00" * 64) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        fh.write(tail)
    return path


@pytest.fixture()
def spy_decode(monkeypatch):
    """Records every call of Pillow's pixel decoding (``ImageFile.load``)."""
    calls = []
    original = ImageFile.ImageFile.load

    def load(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def digits_rng(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


# ----------------------------------------------------------------------------- images: reading and decoding


def test_png_white_on_black_is_read_exactly_and_left_unchanged(tmp_path):
    path = save(digit(), tmp_path / "seven.png")
    before = (sha256(path), path.stat().st_mtime_ns)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (60, 50)
    np.testing.assert_array_equal(image, digit())
    assert (sha256(path), path.stat().st_mtime_ns) == before


def test_black_on_white_png_gives_the_same_digit(tmp_path):
    white_on_black, kind = load_inputs(save(digit(), tmp_path / "a.png"))
    black_on_white, _ = load_inputs(save(255 - digit(), tmp_path / "b.png"))
    assert kind == "image" and white_on_black.shape == (1, 28, 28) and white_on_black.dtype == np.uint8
    np.testing.assert_array_equal(black_on_white, white_on_black)
    np.testing.assert_array_equal(white_on_black, preprocess_digits([digit()]))
    assert white_on_black.max() == 255


def test_off_centre_png_gives_the_same_digit(tmp_path):
    centred, _ = load_inputs(save(digit(), tmp_path / "a.png"))
    corner, _ = load_inputs(save(digit(200, 300, top=150, left=3), tmp_path / "b.png"))
    np.testing.assert_array_equal(corner, centred)


def test_rgb_png(tmp_path):
    rgb = np.repeat(255 - digit()[..., None], 3, axis=2)
    image = read_image(save(rgb, tmp_path / "rgb.png"))
    assert image.shape == (60, 50, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(load_inputs(tmp_path / "rgb.png")[0], preprocess_digits([digit()]))


def test_rgba_png_keeps_alpha_and_transparent_means_white(tmp_path):
    rgba = np.zeros((60, 50, 4), np.uint8)  # black RGB everywhere; only the digit is opaque
    rgba[..., 3] = digit()
    image = read_image(save(rgba, tmp_path / "alpha.png"))
    assert image.shape == (60, 50, 4)
    np.testing.assert_array_equal(image, rgba)
    np.testing.assert_array_equal(load_inputs(tmp_path / "alpha.png")[0], preprocess_digits([digit()]))


def test_grey_alpha_png(tmp_path):
    la = np.stack([np.zeros((60, 50), np.uint8), digit()], axis=2)
    image = read_image(save(la, tmp_path / "la.png"))
    assert image.shape == (60, 50, 2)
    np.testing.assert_array_equal(load_inputs(tmp_path / "la.png")[0], preprocess_digits([digit()]))


def test_16_bit_png_keeps_its_range(tmp_path):
    levels = np.array([[0, 1, 1000, 65535]], dtype=np.uint16)
    image = read_image(save(levels, tmp_path / "levels16.png"))
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, levels)
    sixteen = digit().astype(np.uint16) * 257
    np.testing.assert_array_equal(
        load_inputs(save(sixteen, tmp_path / "seven16.png"))[0], load_inputs(save(digit(), tmp_path / "s8.png"))[0]
    )


def test_1_bit_and_palette_pngs(tmp_path):
    Image.fromarray(digit()).convert("1").save(tmp_path / "bits.png")
    bits = read_image(tmp_path / "bits.png")
    assert bits.dtype == np.bool_
    np.testing.assert_array_equal(bits, digit() > 0)
    Image.fromarray(digit()).convert("P").save(tmp_path / "palette.png")
    palette = read_image(tmp_path / "palette.png")
    assert palette.shape == (60, 50, 4) and palette.dtype == np.uint8
    expected = preprocess_digits([digit()])
    for name in ("bits.png", "palette.png"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name)[0], expected)


def test_tiny_5x5_png(tmp_path):
    plus = np.zeros((5, 5), np.uint8)
    plus[2, :] = plus[:, 2] = 255
    digits, _ = load_inputs(save(plus, tmp_path / "tiny.png"))
    assert digits.shape == (1, 28, 28)
    assert digits[0].any(axis=0).sum() == 20 and digits[0].any(axis=1).sum() == 20


def test_large_2000x2000_png(tmp_path):
    big = np.full((2000, 2000), 255, np.uint8)
    big[300:1700, 900:1150] = 0  # a black "1" on white
    digits, _ = load_inputs(save(big, tmp_path / "large.png"))
    np.testing.assert_array_equal(digits, preprocess_digits([big]))
    assert digits[0].any(axis=1).sum() == 20 and digits[0].any(axis=0).sum() == 4  # 1400x250 -> 20x4 (3.57)


@pytest.mark.parametrize(("suffix", "fmt"), [(".bmp", "BMP"), (".gif", "GIF"), (".tif", "TIFF"), (".tiff", "TIFF")])
def test_lossless_formats_give_the_png_digit(tmp_path, suffix, fmt):
    path = save(255 - digit(), tmp_path / f"seven{suffix}", fmt)
    assert classify_path(path) == "image"
    np.testing.assert_array_equal(load_inputs(path)[0], preprocess_digits([digit()]))


def test_jpeg_is_close_to_the_png_digit(tmp_path):
    path = save(255 - digit(), tmp_path / "seven.jpg", "JPEG", quality=90)
    image = read_image(path)
    assert image.shape == (60, 50) and image.dtype == np.uint8
    got = load_inputs(path)[0][0].astype(float)
    expected = preprocess_digits([digit()])[0].astype(float)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.95
    assert classify_path(tmp_path / "x.JPEG") == "image"


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("L", (30, 50), 200).save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (30, 50)  # stored 50 rows x 30 columns, shown turned
    Image.new("L", (30, 50), 200).save(tmp_path / "plain.jpg")
    assert read_image(tmp_path / "plain.jpg").shape == (50, 30)


def test_animated_gif_and_multipage_tiff_use_the_first_frame(tmp_path):
    first, second = Image.fromarray(digit()), Image.fromarray(np.flipud(digit()))
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
    first.save(tmp_path / "pages.tif", save_all=True, append_images=[second])
    with Image.open(tmp_path / "anim.gif") as check:
        assert check.n_frames == 2
    expected = preprocess_digits([digit()])
    assert not np.array_equal(expected, preprocess_digits([np.flipud(digit())]))
    for name in ("anim.gif", "pages.tif"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name)[0], expected)


def test_decode_image_from_bytes():
    buffer = io.BytesIO()
    Image.fromarray(digit()).save(buffer, "PNG")
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), name="upload"), digit())


def big_photo(width: int = 7200, height: int = 5000, *, mode: str = "RGB") -> Image.Image:
    """A 36-megapixel light page with one thick dark stroke (a "1")."""
    image = Image.new(mode, (width, height), (245,) * len(mode))
    image.paste((20,) * len(mode), (width // 2 - 40, height // 5, width // 2 + 40, 4 * height // 5))
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_are_decoded_within_the_pixel_budget(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    big_photo().save(path, fmt)
    image = read_image(path)
    assert image.shape[0] * image.shape[1] <= images.DECODE_PIXELS  # 7200x5000 reduced by 4: 1800x1250
    assert image.shape[:2] == (1250, 1800) and image.dtype == np.uint8
    digit = load_inputs(path)[0][0]
    assert digit.any(axis=1).sum() == 20 and 1 <= digit.any(axis=0).sum() <= 2  # the stroke, 3000x80 -> 20x1
    small = big_photo(2000, 2000, mode="L")  # 4 MP: within the budget, decoded as it is
    small.save(tmp_path / "small.png")
    np.testing.assert_array_equal(read_image(tmp_path / "small.png"), np.asarray(small))


def test_decoding_a_36_megapixel_photo_keeps_memory_bounded(tmp_path):
    """Peak RSS of decoding and preprocessing one 36 MP photo (was ~1.5 GB: full-size float copies)."""
    path = tmp_path / "photo.png"
    big_photo().save(path)
    script = (
        "import resource, sys\n"
        "from ensemble_cnn.inference.paths import load_inputs\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "load_inputs(sys.argv[1])\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    root = Path(ensemble_cnn.__file__).resolve().parent.parent  # the package under test
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    grown_mb = int(done.stdout.split()[-1])
    assert grown_mb < 400, f"decoding one 36 MP image grew the peak RSS by {grown_mb} MB"


def test_odd_modes_are_reduced_too():
    for mode, fmt in [("1", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("LA", "PNG"), ("F", "TIFF"), ("CMYK", "JPEG")]:
        buffer = io.BytesIO()
        Image.new(mode, (3000, 2000)).save(buffer, fmt)
        image = decode_image(buffer.getvalue(), name="odd")
        assert image.shape[:2] == (1000, 1500), (mode, image.shape)


# ----------------------------------------------------------------------------- images: refusals


def test_truncated_png_is_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # incompressible
    data = (save(noise, tmp_path / "full.png")).read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    refused(read_image, path, names=path, words="corrupt or truncated PNG image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2] + b"\x00" * 50 + data[len(data) // 2 + 50 :])
    refused(read_image, broken, names=broken, words="corrupt or truncated PNG image")


def test_file_name_with_a_newline_stays_one_line(tmp_path):
    path = tmp_path / "two\nlines.png"
    path.write_text("not pixels")
    message = refused(read_image, path, names=str(path).replace("\n", "\\n"), words="cannot identify")
    assert "two\\nlines.png" in message


def test_text_file_named_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    refused(read_image, path, names=path, words="not a PNG, JPEG, BMP, GIF or TIFF image")


def test_other_image_formats_are_not_decoded(tmp_path):
    path = save(digit(), tmp_path / "sneaky.png", "PPM")  # Pillow could read it, but it is not on the list
    refused(read_image, path, names=path, words="not a PNG, JPEG, BMP, GIF or TIFF image")


def test_empty_image_file_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    refused(read_image, path, names=path, words="file is empty")
    refused(decode_image, b"", name="upload.png", names="upload.png", words="file is empty")


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [
        (8000, 8000, "more than the 40,000,000 limit"),  # our own limit (Pillow would only warn at 89 M)
        (10000, 10000, "decompression bomb"),  # Pillow's warning, turned into an error
        (30000, 30000, "decompression bomb"),  # Pillow's error
    ],
)
def test_decompression_bomb_is_refused_without_decoding(tmp_path, spy_decode, width, height, words):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(width, height))
    assert path.stat().st_size < 200_000 and width * height > MAX_IMAGE_PIXELS
    start = time.perf_counter()
    refused(read_image, path, names=path, words=words)
    assert time.perf_counter() - start < 1.0
    assert spy_decode == []


def test_pillow_bomb_warning_is_an_error_even_under_a_raised_limit(tmp_path, monkeypatch, spy_decode):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 10**12)  # leave only Pillow's own check (warns at ~89 M)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(10000, 10000))
    filters = list(warnings.filters)
    refused(read_image, path, names=path, words="refused as a decompression bomb")
    assert spy_decode == [] and warnings.filters == filters  # and the caller's warning filters are untouched


def test_small_png_claiming_a_huge_size_is_refused_without_decoding(tmp_path, spy_decode):
    buffer = io.BytesIO()
    Image.fromarray(digit()).save(buffer, "PNG")
    path = tmp_path / "forged.png"
    path.write_bytes(claim_huge_ihdr(buffer.getvalue(), width=7000, height=7000))
    start = time.perf_counter()
    refused(read_image, path, names=path, words="7000x7000 = 49,000,000 pixels")
    assert time.perf_counter() - start < 1.0 and spy_decode == []


def test_pixel_limit_is_read_at_call_time(tmp_path, monkeypatch, spy_decode):
    path = save(digit(), tmp_path / "seven.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 60 * 50 - 1)
    refused(read_image, path, names=path, words="60 = 3,000 pixels, more than the 2,999 limit")
    assert spy_decode == []


def test_image_file_over_the_byte_limit_is_refused(tmp_path, monkeypatch):
    path = save(digit(), tmp_path / "seven.png")
    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", path.stat().st_size - 1)
    refused(read_image, path, names=path, words="limit for image files")


def test_missing_image_and_folder_are_refused(tmp_path):
    refused(read_image, tmp_path / "nope.png", names=tmp_path / "nope.png", words="no such file")
    refused(read_image, tmp_path, names=tmp_path, words="is a folder")


def test_device_is_refused():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    refused(read_image, "/dev/null", names="/dev/null", words="is a character device")
    refused(read_arrays, "/dev/null", names="/dev/null", words="is a character device")


def _in_thread(call, *args):
    """Run ``call`` in a daemon thread; return its exception (or None) and whether it finished within 5 s."""
    outcome: dict[str, BaseException | None] = {}

    def target():
        try:
            call(*args)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=5)
    return outcome.get("error"), not thread.is_alive()


@needs_fifo
@pytest.mark.parametrize(("name", "call"), [("pipe.png", read_image), ("pipe.npy", read_arrays),
                                            ("pipe", classify_path), ("pipe.jpg", load_inputs)])
def test_fifo_is_refused_without_hanging(tmp_path, name, call):
    path = tmp_path / name
    os.mkfifo(path)
    error, finished = _in_thread(call, path)
    if not finished:  # unblock the stuck reader so the test run can go on
        with open(path, "wb"):
            pass
    assert finished, f"{call.__name__} hung on a FIFO"
    assert isinstance(error, InputError) and str(error) == f"{path}: is a FIFO, expected a regular " + (
        "image or array file" if call is classify_path else "array file" if call is read_arrays else "image file"
    )


# ----------------------------------------------------------------------------- arrays: .npy


def test_npy_single_digit_and_stack(tmp_path):
    stack = digits_rng(4)
    np.save(tmp_path / "one.npy", stack[0])
    np.save(tmp_path / "many.npy", stack)
    np.save(tmp_path / "channel.npy", stack[..., None])
    one = read_arrays(tmp_path / "one.npy")
    assert one.shape == (1, 28, 28) and one.dtype == np.uint8
    np.testing.assert_array_equal(one[0], stack[0])
    np.testing.assert_array_equal(read_arrays(tmp_path / "many.npy"), stack)
    np.testing.assert_array_equal(read_arrays(tmp_path / "channel.npy"), stack)
    digits, kind = load_inputs(tmp_path / "many.npy")
    assert kind == "array"
    np.testing.assert_array_equal(digits, stack)  # used as stored: not re-centred


def test_npy_fortran_order_big_endian_and_version_2(tmp_path):
    stack = digits_rng(2, seed=1)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(stack.astype(">u2")))
    np.testing.assert_array_equal(read_arrays(tmp_path / "fortran.npy"), stack)
    with open(tmp_path / "v2.npy", "wb") as fh:
        np.lib.format.write_array(fh, stack, version=(2, 0))
    np.testing.assert_array_equal(read_arrays(tmp_path / "v2.npy"), stack)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([0.0, 0.5, 1.0], np.float32), [0, 128, 255]),  # [0, 1] scaled by 255
        (np.array([0.0, 2.0, 254.6], np.float64), [0, 2, 255]),  # [0, 255] rounded
        (np.array([0, 7, 255], np.int16), [0, 7, 255]),
        (np.array([0, 255, 3], np.uint64), [0, 255, 3]),
        (np.array([True, False, True]), [255, 0, 255]),
    ],
)
def test_npy_value_conversions(tmp_path, values, expected):
    array = np.zeros((1, 28, 28), values.dtype)
    array[0, 0, :3] = values
    np.save(tmp_path / "values.npy", array)
    got = read_arrays(tmp_path / "values.npy")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, 0, :3], expected)
    assert not got[0, 1:].any()


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.full((28, 28), -1, np.int16), "integer pixel values in [-1, -1], expected 0..255"),
        (np.full((28, 28), 300, np.uint16), "integer pixel values in [300, 300], expected 0..255"),
        (np.full((28, 28), 255.5), "float pixel values in [255.5, 255.5]"),
        (np.full((28, 28), -0.1, np.float32), "expected [0, 1] or [0, 255]"),
        (np.full((28, 28), np.nan), "NaN or infinity"),
        (np.zeros((28, 28), np.complex64), "has dtype complex64"),
        (np.zeros((28, 28), "U1"), "has dtype <U1"),
        (np.zeros((28, 27), np.uint8), "has shape (28, 27), expected (28, 28), (N, 28, 28) or (N, 28, 28, 1)"),
        (np.zeros((2, 28, 28, 3), np.uint8), "has shape (2, 28, 28, 3)"),
        (np.zeros((0, 28, 28), np.uint8), "holds zero digits"),
        (np.zeros(5, dtype=[("a", "u1")]), "has dtype"),
    ],
)
def test_npy_bad_values_shapes_and_dtypes_are_refused(tmp_path, array, words):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    refused(read_arrays, path, names=path, words=words)


class _Payload:
    """Unpickling this would create a folder: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickled_npy_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    refused(read_arrays, path, names=path, words="object (pickled) data, which is refused")
    assert not marker.exists()
    np.save(tmp_path / "objects.npy", np.empty((2, 28, 28), dtype=object), allow_pickle=True)
    refused(read_arrays, tmp_path / "objects.npy", names=tmp_path / "objects.npy", words="object (pickled)")


def test_npy_header_claiming_ten_billion_digits_is_refused_without_allocating(tmp_path):
    path = npy_header_only(tmp_path / "claim.npy", shape=(10**10, 28, 28))
    tracemalloc.start()
    try:
        start = time.perf_counter()
        refused(read_arrays, path, names=path, words="header claims shape (10000000000, 28, 28) of uint8")
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 10 * 2**20


def test_npy_with_less_data_than_its_header_promises_is_refused(tmp_path):
    path = npy_header_only(tmp_path / "short.npy", shape=(10, 28, 28), tail=b"\x00" * 100)
    refused(read_arrays, path, names=path, words="truncated .npy data (100 bytes, header promises 7840")


def test_npy_with_a_broken_header_is_refused(tmp_path):
    path = tmp_path / "broken.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': <garbage>")
    refused(read_arrays, path, names=path, words="not a valid .npy header")
    newer = tmp_path / "v9.npy"
    newer.write_bytes(b"\x93NUMPY\x09\x00" + b"\x00" * 40)
    refused(read_arrays, newer, names=newer, words=".npy")


def test_array_limits(tmp_path, monkeypatch):
    path = tmp_path / "many.npy"
    np.save(path, digits_rng(10))
    monkeypatch.setattr(arrays, "MAX_ARRAY_BYTES", 9 * 784)
    refused(read_arrays, path, names=path, words="header claims shape (10, 28, 28) of uint8 (7840 bytes)")
    monkeypatch.setattr(arrays, "MAX_ARRAY_FILE_BYTES", 1000)
    refused(read_arrays, path, names=path, words="more than the 1000 bytes limit for array files")


def test_unknown_bytes_are_not_an_array(tmp_path):
    path = tmp_path / "noise.npy"
    path.write_bytes(b"just some text")
    refused(read_arrays, path, names=path, words="not a .npy, .npz or IDX images file")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    refused(read_arrays, empty, names=empty, words="file is empty")


# ----------------------------------------------------------------------------- arrays: .npz


def test_npz_with_x_with_x_test_and_with_both(tmp_path):
    a, b = digits_rng(2, seed=1), digits_rng(3, seed=2)
    np.savez(tmp_path / "x.npz", x=a, y=np.arange(2))
    np.savez_compressed(tmp_path / "x_test.npz", x_train=b, x_test=b[:1])
    np.savez(tmp_path / "both.npz", x_test=b, x=a)
    np.testing.assert_array_equal(read_arrays(tmp_path / "x.npz"), a)
    np.testing.assert_array_equal(read_arrays(tmp_path / "x_test.npz"), b[:1])
    np.testing.assert_array_equal(read_arrays(tmp_path / "both.npz"), a)  # x is preferred


def test_npz_with_neither_key_lists_what_it_holds(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, images=digits_rng(1), labels=np.arange(1))
    message = refused(read_arrays, path, names=path)
    assert message == f"{path}: holds no array named x or x_test (it holds: images, labels)"


def test_npz_member_problems_name_the_array(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((3, 5), np.uint8))
    refused(read_arrays, path, names=f"{path} [x]", words="has shape (3, 5)")
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.npz"
    np.savez(evil, x=np.array([_Payload(marker)], dtype=object))
    refused(read_arrays, evil, names=f"{evil} [x]", words="object (pickled)")
    assert not marker.exists()


def test_npz_member_header_bomb_is_refused_quickly(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 28, 28)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\x00" * 64)
    start = time.perf_counter()
    refused(read_arrays, path, names=f"{path} [x]", words="header claims shape (10000000000, 28, 28) of float64")
    assert time.perf_counter() - start < 1.0


def test_npz_member_unpacking_past_the_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((100, 28, 28), np.uint8))  # 78 KB unpacked, tiny packed
    monkeypatch.setattr(arrays, "MAX_ARRAY_BYTES", 10_000)
    refused(read_arrays, path, names=path, words="array x unpacks to 78528 bytes, more than the 10000 bytes limit")


def test_corrupt_npz_is_refused(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    refused(read_arrays, path, names=path, words="not a readable .npz archive")


# ----------------------------------------------------------------------------- arrays: IDX


def test_idx_and_gzipped_idx(tmp_path):
    stack = digits_rng(5, seed=3)
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(idx_bytes(stack))
    packed = tmp_path / "t10k-images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(idx_bytes(stack)))
    plain = tmp_path / "digits.idx"
    plain.write_bytes(idx_bytes(stack))
    for path in (raw, packed, plain):
        assert classify_path(path) == "array"
        np.testing.assert_array_equal(read_arrays(path), stack)


def test_idx_labels_and_other_sizes_are_refused(tmp_path):
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes((0x00000801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    refused(read_arrays, labels, names=labels, words="an IDX labels file (magic 0x00000801)")
    small = tmp_path / "small-idx3-ubyte"
    small.write_bytes(idx_bytes(np.zeros((2, 10, 10), np.uint8)))
    refused(read_arrays, small, names=small, words="IDX images of 10x10 pixels, expected 28x28")
    wrong = tmp_path / "wrong.idx"
    wrong.write_bytes(bytes.fromhex("00000c03") + b"\x00" * 12)
    refused(read_arrays, wrong, names=wrong, words="wrong IDX magic number 0x00000c03")


def test_idx_with_wrong_length_is_refused(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(idx_bytes(digits_rng(3))[:-5])
    refused(read_arrays, path, names=path, words="IDX data holds 2347 bytes, header promises 2352")


def test_idx_header_claiming_a_billion_images_is_refused_quickly(tmp_path):
    path = tmp_path / "claim-idx3-ubyte.gz"
    header = (0x00000803).to_bytes(4, "big") + (10**9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path.write_bytes(gzip.compress(header + b"\x00" * 784))
    start = time.perf_counter()
    refused(read_arrays, path, names=path, words="header claims 1,000,000,000 images")
    assert time.perf_counter() - start < 1.0


def test_gzip_idx_unpacking_to_more_than_its_header_says_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "padded-idx3-ubyte.gz"
    header = (0x00000803).to_bytes(4, "big") + (1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path.write_bytes(gzip.compress(header + b"\x00" * (50 * 2**20)))  # 50 MiB of zeros in ~50 KB
    assert path.stat().st_size < 200_000
    unpacked = []
    read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, *a: unpacked.append(len(out := read(self, *a))) or out)
    refused(read_arrays, path, names=path, words="IDX data unpacks to more than 800 bytes, header promises 800")
    assert 0 < sum(unpacked) <= 16 + 800 + 1  # stopped one byte past the promise: the 50 MiB are never unpacked


def test_idx_compression_must_match_the_name(tmp_path):
    packed = tmp_path / "t10k-images-idx3-ubyte"
    packed.write_bytes(gzip.compress(idx_bytes(digits_rng(1))))
    refused(read_arrays, packed, names=packed, words="must be named *.gz when gzip-compressed")
    raw = tmp_path / "raw-idx3-ubyte.gz"
    raw.write_bytes(idx_bytes(digits_rng(1)))
    refused(read_arrays, raw, names=raw, words="must be gzip-compressed when named *.gz")


def test_corrupt_gzip_idx_is_refused(tmp_path):
    path = tmp_path / "corrupt-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(digits_rng(2)))[:40])
    refused(read_arrays, path, names=path)


# ----------------------------------------------------------------------------- classify_path


def test_suffix_lists():
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
    assert {".npy", ".npz", ".idx", "-ubyte", "-ubyte.gz"} <= set(ARRAY_SUFFIXES)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.png", "image"), ("B.JPG", "image"), ("c.Tiff", "image"), ("d.npy", "array"), ("e.NPZ", "array"),
     ("train-images-idx3-ubyte", "array"), ("t10k-images-idx3-ubyte.gz", "array"), ("f.idx", "array"),
     ("f.idx.gz", "array")],
)
def test_classify_by_name_opens_nothing(tmp_path, name, kind):
    assert classify_path(tmp_path / name) == kind  # the file does not even exist


def test_classify_by_content_when_the_name_says_nothing(tmp_path):
    save(digit(), tmp_path / "scan", "PNG")
    np.save(tmp_path / "arr.npy", digits_rng(1))
    os.rename(tmp_path / "arr.npy", tmp_path / "arr")
    (tmp_path / "digits.gz").write_bytes(gzip.compress(idx_bytes(digits_rng(1))))
    (tmp_path / "raw-idx").write_bytes(idx_bytes(digits_rng(1)))
    assert [classify_path(tmp_path / n) for n in ("scan", "arr", "digits.gz", "raw-idx")] == [
        "image", "array", "array", "array"]
    assert load_inputs(tmp_path / "scan")[1] == "image"
    (tmp_path / "notes.gz").write_bytes(gzip.compress(b"hello"))
    (tmp_path / "README").write_text("hello")
    for name in ("notes.gz", "README"):
        refused(classify_path, tmp_path / name, names=tmp_path / name, words="not a recognised image or array file")
    refused(classify_path, tmp_path / "missing", names=tmp_path / "missing", words="no such file")


# ----------------------------------------------------------------------------- expand_paths


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_lists_its_image_and_array_files_sorted(tmp_path):
    folder = tmp_path / "in"
    for name in ("b.png", "a.npy", "C.JPG", "notes.txt", ".hidden.png", "t10k-images-idx3-ubyte.gz", "sub/d.png"):
        touch(folder / name)
    files, problems = expand_paths([folder])
    assert problems == []
    assert files == [folder / n for n in ("C.JPG", "a.npy", "b.png", "t10k-images-idx3-ubyte.gz")]


def test_recursive_listing_is_in_path_order(tmp_path):
    folder = tmp_path / "in"
    for name in ("b.png", "a/z.png", "a/y/x.npy", "a.png", "c/.git/e.png", ".cache/f.png", "c/d.tif"):
        touch(folder / name)
    files, problems = expand_paths([folder], recursive=True)
    assert problems == []
    assert files == [folder / n for n in ("a/y/x.npy", "a/z.png", "a.png", "b.png", "c/d.tif")]


def test_recursive_listing_does_not_follow_folder_links(tmp_path):
    folder = tmp_path / "in"
    touch(folder / "a.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    files, problems = expand_paths([folder], recursive=True)
    assert files == [folder / "a.png"] and problems == []


@pytest.mark.parametrize("recursive", [False, True])
def test_symbolic_link_loops_are_problems_and_the_rest_is_listed(tmp_path, recursive):
    folder = tmp_path / "in"
    good = touch(folder / "good.png")
    (folder / "x").symlink_to("x")  # ln -s x x
    (folder / "y.png").symlink_to("y.png")
    files, problems = expand_paths([folder, folder / "x"], recursive=recursive)
    assert files == [good]
    loop = "is a symbolic link that loops (Too many levels of symbolic links)"
    assert sorted(problems) == [(folder / "x", loop), (folder / "x", loop), (folder / "y.png", loop)]


def test_empty_folders_and_missing_paths_are_problems_and_the_rest_goes_on(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_text = tmp_path / "text"
    touch(only_text / "notes.txt")
    nested = tmp_path / "nested"
    touch(nested / "deep" / "a.png")
    image = touch(tmp_path / "one.png")
    odd = touch(tmp_path / "odd.dat")  # named explicitly: kept, reading it decides
    files, problems = expand_paths([empty, image, tmp_path / "missing.png", only_text, nested, odd])
    assert files == [image, odd]
    assert problems == [
        (empty, "no image or array files in it"),
        (tmp_path / "missing.png", "no such file or folder"),
        (only_text, "no image or array files in it"),
        (nested, "no image or array files in it (its 1 sub-folder(s) are searched only when recursive)"),
    ]
    files, problems = expand_paths([nested], recursive=True)
    assert files == [nested / "deep" / "a.png"] and problems == []


def test_paths_keep_their_order_and_repeats(tmp_path):
    a, b = touch(tmp_path / "a.png"), touch(tmp_path / "b.npy")
    assert expand_paths([str(b), a, b]) == ([b, a, b], [])


@needs_fifo
def test_fifo_among_paths_is_a_problem(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    touch(tmp_path / "a.png")
    assert expand_paths([pipe]) == ([], [(pipe, "is a FIFO, expected a file or folder")])
    assert expand_paths([tmp_path]) == ([tmp_path / "a.png"], [(pipe, "is a FIFO, expected a file")])


def test_load_inputs_refuses_unreadable_images(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("not a jpeg")
    refused(load_inputs, path, names=path, words="not a PNG, JPEG, BMP, GIF or TIFF image")


@pytest.mark.parametrize("image", ["white", "black", "transparent"])
def test_load_inputs_refuses_an_image_with_no_ink(tmp_path, image):
    make = {"white": lambda: Image.new("L", (10000, 1), 255), "black": lambda: Image.new("1", (1, 1), 0),
            "transparent": lambda: Image.new("RGBA", (30, 30), (255, 0, 0, 0))}[image]
    path = tmp_path / f"{image}.png"
    make().save(path)
    refused(load_inputs, path, names=path, words="no ink found")
