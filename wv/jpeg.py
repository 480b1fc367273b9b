"""Reduced-scale JPEG decodes: libjpeg(-turbo)'s DCT scaling through PIL's draft mode.

A JPEG decoded at 1/2, 1/4 or 1/8 of its size skips most of the inverse DCT and the colour conversion
of the pixels it does not produce, while still reading every entropy-coded byte. Wherever an image
is going to be shrunk anyway (a random crop resized to 224 px, an evaluation resize, the build's
`--resize`) it is decoded at the smallest scale that still leaves at least as many pixels as the
output needs, and the rest of the shrink is an ordinary resize.

    ScaledRandomResizedCrop(224)   RandomResizedCrop + flip + PILToTensor with the same random draws,
                                   in the same order, as torchvision's; the decode scale is picked
                                   after the crop box is drawn on the full-size geometry (the header)
    draft_for_short_side(img, n)   before an evaluation transform that resizes the short side to n
    short_side_target(preprocess)  that n, read off a torchvision / open_clip evaluation Compose
    load_scaled(img, reduce)       draft + decode + RGB (and the reduction used); damaged bytes: DecodeFailed
"""

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

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


class ScaledRandomResizedCrop:
    """PIL image (opened; decoded or not) -> uint8 tensor [3, size, size]: RandomResizedCrop(size) +
    RandomHorizontalFlip + PILToTensor, decoding a JPEG at 1/2, 1/4 or 1/8 where the crop allows.

    The crop box and the flip come from the same calls to torch's random generator, in the same order,
    as `T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])`, so a seeded
    sample gets the same geometry; at full scale the pixels are identical too. At a reduced scale the
    box is mapped onto the smaller image (sub-pixel exact) and resized with the same bilinear filter.
    """

    accepts_unloaded = True  # wv.stream's Prepare hands it the image before decoding (for the draft)

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, image: Image.Image) -> tuple[int, int, int, int]:
        """The crop (top, left, height, width) on the full-size geometry: torchvision's own draw."""
        return T.RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        top, left, height, width = self.box(image)
        reduce = reduce_factor(width, height, self.size, self.size)
        image, used = load_scaled(image, reduce)
        if used == 1:
            out = F.resized_crop(image, top, left, height, width, [self.size, self.size], antialias=True)
        else:
            box = (left / used, top / used, (left + width) / used, (top + height) / used)
            out = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1) < 0.5:
            out = F.hflip(out)
        return F.pil_to_tensor(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"
