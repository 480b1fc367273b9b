"""Checking that an image file is usable, and turning it into the JPEG bytes a shard stores.

Two checks (`--check`):
  full   decodes the whole image: catches missing, empty, non-image and truncated files, and every
         file the decoder refuses (damaged Huffman tables, scan headers, markers). Damage inside the
         entropy-coded data that libjpeg repairs silently is not an error here, nor at training time.
         A JPEG that is stored as it is gets decoded at 1/8 scale (libjpeg's DCT scaling): every
         entropy-coded byte is still read and checked, so the verdict is a full decode's
         (tests/shards/test_check_corpus.py), but the inverse DCT and colour conversion shrink 64-fold.
         simplejpeg decodes it first; only a file it refuses goes to PIL, which gives the reason.
  cheap  parses the header and looks for the format's end marker (JPEG FFD9, PNG IEND, GIF ';'):
         catches missing, empty, non-image and truncated files, not damaged tables or data inside
         the image; it also rejects the rare JPEG that carries bytes after its end marker.
Non-JPEG images (PNG, GIF, WebP ... saved as .jpg on the web) are decoded and re-encoded as JPEG in
either mode, so every `.jpg` in a shard is a JPEG.

Only regular files of at most MAX_IMAGE_BYTES are read: a FIFO, a device (a `.jpg` link to
/dev/zero) or a huge file becomes a reject, never a hang or an out-of-memory.
"""

import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from wv.jpeg import draft

END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}
TRAILING_PADDING = b"\x00\r\n \t"
CHECK_REDUCE = 8  # the full check's DCT scale for a JPEG kept as it is
MAX_IMAGE_BYTES = 64 << 20  # a WebVision image is 10-200 KB; no real one comes near this
READ_STEP = 64 << 10
FILE_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class BadImage(Exception):
    """The file cannot become a sample; the message is the reject reason."""


@dataclass
class PreparedImage:
    data: bytes
    width: int
    height: int
    format: str


def read_image_file(path: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (symbolic links followed), else BadImage.

    The kind and size are checked before opening, and the file is opened non-blocking and checked
    again, so a FIFO or device put in its place meanwhile is not read either.
    """
    try:
        check_file(os.stat(path), limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            check_file(info, limit)
            data = read_up_to(fd, info.st_size, limit)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise BadImage("missing file") from None
    except OSError as error:
        raise BadImage(f"unreadable file: {error.strerror or error}") from None
    except ValueError as error:  # a NUL byte in the path
        raise BadImage(f"unreadable file: {error}") from None
    if len(data) > limit:
        raise BadImage(too_large(limit))
    return data


def read_up_to(fd: int, size: int, limit: int) -> bytes:
    """The first limit + 1 bytes at most of the open file `fd`, whose stat size was `size`.

    Read as size + 1 bytes first: asking for limit + 1 at once made Python allocate a 64 MiB buffer for
    every 30 KB image (most of the read's cost). Then on to the end (a file that grew since its stat)
    in 64 KiB steps, up to the limit. os.read, not a file object: a fifth less CPU per image read.
    """
    data = os.read(fd, size + 1)
    while len(data) <= limit and (more := os.read(fd, min(READ_STEP, limit + 1 - len(data)))):
        data += more
    return data


def check_file(info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in FILE_KINDS if test(info.st_mode)), "special file")
        raise BadImage(f"not a regular file ({kind})")
    if info.st_size > limit:
        raise BadImage(too_large(limit))


def too_large(limit: int) -> str:
    return f"file larger than {limit >> 20} MiB" if limit >= 1 << 20 else f"file larger than {limit} bytes"


def prepare_image(data: bytes, check: str = "full", resize: int | None = None, quality: int = 90) -> PreparedImage:
    """Check `data` and return the JPEG bytes to store (the original bytes whenever possible)."""
    if not data:
        raise BadImage("empty file")
    if check == "cheap" and resize is None:
        size = jpeg_size(data)
        if size is not None and data.rstrip(TRAILING_PADDING).endswith(END_MARKERS["JPEG"]):
            return PreparedImage(data, size[0], size[1], "JPEG")
    image = open_image(data)
    fmt = image.format or "unknown"
    if check == "cheap" and fmt in END_MARKERS and not data.rstrip(TRAILING_PADDING).endswith(END_MARKERS[fmt]):
        raise BadImage(f"truncated image (no {fmt} end marker)")
    width, height = image.size
    needs_resize = resize is not None and min(image.size) > resize
    if check == "full" or fmt != "JPEG" or needs_resize:
        load(image, data, scaled_size(image.size, resize) if needs_resize else None)
    if needs_resize:
        image = image.resize(scaled_size((width, height), resize), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return encode_jpeg(image, quality, fmt)
    if fmt != "JPEG":
        return encode_jpeg(image, 95, fmt)
    return PreparedImage(data, width, height, fmt)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None (not a JPEG, or a header to leave to PIL).

    The cheap check's fast path: walking the markers costs a few microseconds, PIL's full header
    parse ten times more, which is most of a cheap build's time per image.
    """
    if data[:2] != b"\xff\xd8":
        return None
    at, end = 2, len(data) - 9
    while at < end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack_from(">HH", data, at + 5)
            return (width, height) if width and height else None
        elif marker == 0xDA:  # start of scan before any frame header: damaged
            return None
        else:
            at += 2 + struct.unpack_from(">H", data, at + 2)[0]
    return None


def open_image(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("image too large (decompression bomb guard)") from None
    except Exception as error:  # PIL raises many types for damaged headers
        raise BadImage(f"corrupt image header: {error}") from None


def load(image: Image.Image, data: bytes, resize_to: tuple[int, int] | None) -> None:
    """Decode the image, or BadImage. A JPEG is decoded at the scale its use needs: near `resize_to`
    when it is resized, at 1/CHECK_REDUCE when it is kept as it is (the full check)."""
    if image.format == "JPEG" and resize_to is not None:
        image.draft("RGB", resize_to)
    elif image.format == "JPEG":
        if decodes_cleanly(data, image.size):
            return  # a JPEG kept as it is needs no pixels, only the verdict
        draft(image, CHECK_REDUCE)
    decode(image)


def decodes_cleanly(data: bytes, size: tuple[int, int]) -> bool:
    """True when libjpeg-turbo (simplejpeg, strict) decodes the JPEG at 1/CHECK_REDUCE scale without
    one error or warning. The full check's fast path, about 15% cheaper than PIL's decode: a file
    it refuses is decoded by PIL, whose verdict and reason count, so the verdicts stay PIL's as long
    as it accepts nothing PIL refuses (tests/shards/test_check_corpus.py).
    GRAY still decodes every component's entropy-coded data; only the chroma's IDCT and the colour
    conversion are skipped.
    """
    import simplejpeg  # here: it imports numpy, which only a full check needs to pay for

    width, height = size
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_width=max(1, width // CHECK_REDUCE), min_height=max(1, height // CHECK_REDUCE), strict=True)
    except Exception:  # ValueError for damaged data; whatever it is, PIL decides
        return False
    return True


def decode(image: Image.Image) -> None:
    try:
        image.load()
    except OSError as error:
        if "truncated" in str(error) or "premature end" in str(error).lower():
            raise BadImage("truncated image") from None
        raise BadImage(f"corrupt image: {error}") from None
    except Exception as error:
        raise BadImage(f"corrupt image: {error}") from None


def scaled_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    width, height = size
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(image: Image.Image, quality: int, source_format: str) -> PreparedImage:
    rgb = to_rgb(image)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return PreparedImage(out.getvalue(), rgb.size[0], rgb.size[1], source_format)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas on white (web PNGs and GIFs often have alpha)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
