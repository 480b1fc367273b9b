"""Reduced-scale JPEG decodes: libjpeg-turbo's DCT scaling, through simplejpeg or PIL's draft mode.

A JPEG decoded at 1/2, 1/4 or 1/8 of its size skips most of the inverse DCT and the colour conversion
of the pixels it does not produce, while still reading every entropy-coded byte. Wherever an image
is going to be shrunk anyway (a random crop resized to 224 px, an evaluation resize, the build's
`--resize`) it is decoded at the smallest scale that still leaves at least as many pixels as the
output needs, and the rest of the shrink is an ordinary resize.

    (wv.train.crops.ScaledRandomResizedCrop: the training crop made of these)
    draft_for_short_side(img, n)   before an evaluation transform that resizes the short side to n
    short_side_target(preprocess)  that n, read off a torchvision / open_clip evaluation Compose
    load_scaled(img, reduce)       draft + decode + RGB (and the reduction used); damaged bytes: DecodeFailed
    open_bytes(data)               Image.open, its failure a DecodeFailed with Pillow's reason
    jpeg_size(data)                (width, height) of a YCbCr JPEG from its header without Pillow; else None
    jpeg_rgb(data, size, reduce)   JPEG bytes -> numpy RGB at 1/reduce through simplejpeg (Pillow's pixels,
                                   no RGBX buffer); None where libjpeg warns or fails (let Pillow say why)
No torch here: the build's check and the shard readers run it in workers that never import torch (nor
numpy, which simplejpeg imports, unless they decode with it).
"""

import io
import math

from PIL import Image, UnidentifiedImageError

SCALES = (8, 4, 2, 1)


class DecodeFailed(Exception):
    """The image's bytes could not be decoded; the message is the decoder's reason."""


def reduce_factor(box_width: float, box_height: float, out_width: int, out_height: int) -> int:
    """The largest DCT reduction (8, 4, 2 or 1) at which the box still has at least the output's pixels."""
    return next((s for s in SCALES if box_width >= out_width * s and box_height >= out_height * s), 1)


def draft(image: Image.Image, reduce: int) -> int:
    """Ask the decoder for 1/reduce of the size (JPEGs not yet decoded; anything else is left alone).
    Returns the reduction it will decode at: 1 pixel of the result covers that many of the original's."""
    if reduce > 1 and image.format == "JPEG" and getattr(image, "tile", None):
        width, height = image.size
        # PIL picks the largest scale s with size // request >= s: this request gives exactly `reduce`
        drafted = image.draft("RGB", (max(1, width // reduce), max(1, height // reduce)))
        if drafted is not None:
            return round(width / drafted[1][2])
    return 1


def draft_for_short_side(image: Image.Image, short_side: int) -> None:
    """Before a resize of the short side to `short_side`: decode at the smallest scale that keeps it."""
    width, height = image.size
    side = min(width, height)
    draft(image, reduce_factor(side, side, short_side, short_side))


def short_side_target(preprocess) -> int | None:
    """The short side an evaluation preprocessing (a Compose that starts with conversions, then a
    short-side Resize: torchvision's and open_clip's) resizes to; None for anything else."""
    from torchvision import transforms as T  # here: only model preprocessing (torch already loaded) asks

    for step in getattr(preprocess, "transforms", ()):
        if isinstance(step, T.Resize):
            size = step.size
            if isinstance(size, int):
                return size
            return size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else None
        if not isinstance(step, T.Lambda):  # a colour conversion may come first; anything else: no guess
            return None
    return None


def load_scaled(image: Image.Image, reduce: int = 1) -> tuple[Image.Image, int]:
    """(the image decoded at 1/reduce in RGB, the reduction used: see `draft`); DecodeFailed if its bytes are damaged."""
    used = draft(image, reduce)
    try:
        image.load()
    except Exception as error:  # PIL raises many types for damaged bytes
        raise DecodeFailed(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    return (image if image.mode == "RGB" else image.convert("RGB")), used


def open_bytes(data) -> Image.Image:
    """The image with its header read and its pixels not yet decoded; DecodeFailed if Pillow cannot open it."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception as error:  # PIL raises many types for bytes that are no image
        raise DecodeFailed(open_failure(error)) from None


def open_failure(error: Exception) -> str:
    """Why Pillow could not open an image, in one line."""
    return "no image format PIL knows" if isinstance(error, UnidentifiedImageError) or not str(error) else str(error).splitlines()[0]


def jpeg_size(data) -> tuple[int, int] | None:
    """(width, height) of a YCbCr JPEG read from its header by libjpeg-turbo (no Pillow); None for anything
    else (grey, CMYK, RGB-coded, not a JPEG, a damaged header), which Pillow then opens."""
    import simplejpeg  # here, not above: it imports numpy (see the module's docstring)

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (width, height) if colorspace == "YCbCr" else None


def jpeg_rgb(data, size: tuple[int, int], reduce: int = 1):
    """The RGB pixels (numpy HWC uint8) of a YCbCr JPEG of `size` (width, height) decoded at 1/reduce, or
    None if libjpeg raises or warns: strict, so damaged bytes that Pillow would fill in or refuse go to
    Pillow, which then decides and gives its reason."""
    import simplejpeg

    shape = (math.ceil(size[1] / reduce), math.ceil(size[0] / reduce))
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, min_width=shape[1], min_height=shape[0])
    except ValueError:
        return None
    return pixels if pixels.shape[:2] == shape else None  # a header that lied about the size
