"""Image transforms of training and evaluation: uint8 tensors out, normalised on the device.

    train_transform(size)   RandomResizedCrop + horizontal flip (the ImageNet recipe), decoded at
                            1/2, 1/4 or 1/8 scale where the crop is shrunk that much anyway,
                            resized by torch's uint8 kernel at full scale
    eval_crops(size, n)     1: resize the short side to size/0.875, centre crop
                            10: the same resize, four corners + centre, and their mirrors
                            144: GoogLeNet's multi-crop: 4 scales x 3 squares x (5 crops + the
                                 square resized) x 2 mirrors
Workers hand over uint8 tensors (4x fewer bytes than float32); `normalise` runs on the GPU.
"""

import io

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from wv.jpeg import jpeg_rgb, jpeg_size, load_scaled, open_bytes, reduce_factor

BYTES = (bytes, bytearray, memoryview)

CROPS = (1, 10, 144)
CENTRE_RATIO = 0.875  # 224 of 256
SCALES_144 = (256, 288, 320, 352)  # short sides for a 224 crop (Szegedy et al., 2015)


class ScaledRandomResizedCrop:
    """PIL image (opened; decoded or not) -> uint8 tensor [3, size, size]: RandomResizedCrop(size) +
    RandomHorizontalFlip + PILToTensor, decoding a JPEG at 1/2, 1/4 or 1/8 where the crop allows.

    The crop box and the flip come from the same calls to torch's random generator, in the same order,
    as `T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])`, so a seeded
    sample gets the same geometry. A YCbCr JPEG is decoded by libjpeg-turbo through simplejpeg
    (`jpeg_pixels`: Pillow's pixels at every scale, straight into RGB), anything else by Pillow. The crop is
    resized by torch (`resized`: Pillow's antialiased bilinear filter; a pixel is at most one level off
    Pillow's, the differences unbiased). At a reduced scale the box is mapped onto the smaller image and
    rounded to its whole pixels (at most half of one: `reduce / 2` original pixels); where Pillow
    decodes at a reduced scale, it maps the box sub-pixel exactly and resizes with the same filter.
    """

    accepts_bytes = True  # wv.stream's Prepare hands it the sample's bytes: a JPEG's header is read without Pillow
    accepts_unloaded = True  # or a Pillow image before decoding (for the draft)

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The crop (top, left, height, width) on an image of `size` (width, height): torchvision's own draw."""
        return T.RandomResizedCrop.get_params(torch.empty(0, size[1], size[0]), list(self.scale), list(self.ratio))

    def __call__(self, image: Image.Image | bytes) -> torch.Tensor:
        """`image`: a Pillow image (decoded or not) or an image's bytes (DecodeFailed if they are no image)."""
        size = jpeg_size(image) if isinstance(image, BYTES) else None
        if isinstance(image, BYTES) and size is None:
            image = open_bytes(image)
        top, left, height, width = self.box(size or image.size)
        flip = torch.rand(1) < 0.5
        reduce = reduce_factor(width, height, self.size, self.size)
        pixels, used = jpeg_tensor(jpeg_rgb(image, size, reduce), reduce) if size else jpeg_pixels(image, reduce)
        if pixels is not None:
            crop = pixels[:, round(top / used) : round((top + height) / used), round(left / used) : round((left + width) / used)]
            return resized(crop, self.size, flip)
        return self.pillow_crop(open_bytes(image) if size else image, (top, left, height, width), flip, reduce)

    def pillow_crop(self, image: Image.Image, box: tuple[int, int, int, int], flip: bool, reduce: int) -> torch.Tensor:
        """The crop of anything simplejpeg does not decode: Pillow decodes (at 1/reduce if a JPEG), or says why not."""
        top, left, height, width = box
        image, used = load_scaled(image, reduce)
        if used > 1:  # the box mapped onto the smaller image (sub-pixel exact), resized by Pillow
            scaled = (left / used, top / used, (left + width) / used, (top + height) / used)
            out = F.pil_to_tensor(image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=scaled))
            return out.flip(-1) if flip else out
        return resized(image_pixels(image.crop((left, top, left + width, top + height))), self.size, flip)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def jpeg_pixels(image: Image.Image, reduce: int = 1) -> tuple[torch.Tensor | None, int]:
    """A YCbCr JPEG opened from bytes and not yet decoded -> (its uint8 RGB pixels [3, H, W] decoded at
    1/reduce (a view of HWC memory), the reduction used): Pillow's pixels, from libjpeg-turbo through
    simplejpeg without Pillow's RGBX buffer. (None, 1) for anything else, or for bytes that libjpeg decodes
    only with a warning (then Pillow decodes them, or says why it cannot)."""
    if image.format != "JPEG" or image.mode != "RGB" or "adobe" in image.info or not getattr(image, "tile", None):
        return None, 1
    source = getattr(image, "fp", None)
    if not isinstance(source, io.BytesIO):
        return None, 1
    return jpeg_tensor(jpeg_rgb(source.getbuffer(), image.size, reduce), reduce)


def jpeg_tensor(pixels: np.ndarray | None, reduce: int) -> tuple[torch.Tensor | None, int]:
    """numpy HWC from `jpeg_rgb` -> ([3, H, W] view, reduce); (None, 1) where it gave none."""
    return (None, 1) if pixels is None else (torch.from_numpy(pixels).permute(2, 0, 1), reduce)


def image_pixels(image: Image.Image) -> torch.Tensor:
    """A decoded PIL RGB image -> its uint8 pixels [3, H, W] (a view of HWC memory)."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def resized(pixels: torch.Tensor, size: int, flip: bool) -> torch.Tensor:
    """uint8 pixels [3, h, w] -> [3, size, size] (mirrored if `flip`): torch's antialiased bilinear
    resize of channels-last uint8 (Pillow's filter and fixed-point maths: a pixel is at most one level
    off Pillow's own resize, and ~2.5x faster than it)."""
    batch = pixels.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    out = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", antialias=True)[0]
    return out.flip(-1) if flip else out


def train_transform(size: int):
    """RandomResizedCrop(size) + flip -> uint8, decoding JPEGs at the DCT scale the crop allows (wv.jpeg)."""
    return ScaledRandomResizedCrop(size)


def resize_short(image, short: int):
    return F.resize(image, short, interpolation=T.InterpolationMode.BILINEAR)


class EvalCrops:
    """PIL image -> uint8 tensor [crops, 3, size, size]."""

    def __init__(self, size: int, crops: int = 1):
        if crops not in CROPS:
            raise ValueError(f"crops must be one of {CROPS}")
        self.size, self.crops = size, crops

    def __call__(self, image) -> torch.Tensor:
        if self.crops == 144:
            views = self.googlenet_views(image)
        else:
            resized = resize_short(image, round(self.size / CENTRE_RATIO))
            views = [F.center_crop(resized, self.size)] if self.crops == 1 else list(F.ten_crop(resized, self.size))
        return torch.stack([F.pil_to_tensor(v) for v in views])

    def googlenet_views(self, image) -> list:
        views = []
        for scale in SCALES_144:
            resized = resize_short(image, round(scale * self.size / 224))
            for square in three_squares(resized):
                crops = list(F.five_crop(square, self.size)) + [F.resize(square, [self.size, self.size])]
                views += crops + [F.hflip(c) for c in crops]
        return views


def three_squares(image) -> list:
    """Left, centre and right squares of a landscape image (top, middle, bottom of a portrait one)."""
    width, height = image.size
    side = min(width, height)
    if width >= height:
        starts = [(0, 0), ((width - side) // 2, 0), (width - side, 0)]
    else:
        starts = [(0, 0), (0, (height - side) // 2), (0, height - side)]
    return [image.crop((x, y, x + side, y + side)) for x, y in starts]


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [.., 3, H, W] -> float, scaled to [0, 1] and normalised per channel. The same operations in the
    same order as `(images.float() / 255 - mean) / std` (the same bits), in place on one new float copy:
    no temporary per step (a third of the CPU time)."""
    mean = torch.tensor(mean, device=images.device).view(3, 1, 1)
    std = torch.tensor(std, device=images.device).view(3, 1, 1)
    return images.to(torch.float32, copy=True).div_(255).sub_(mean).div_(std)
