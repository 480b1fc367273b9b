"""Image transforms of training and evaluation: uint8 tensors out, normalised on the device.

    train_transform(size)   RandomResizedCrop + horizontal flip (the ImageNet recipe), decoded at
                            1/2, 1/4 or 1/8 scale where the crop is shrunk that much anyway
    eval_crops(size, n)     1: resize the short side to size/0.875, centre crop
                            10: the same resize, four corners + centre, and their mirrors
                            144: GoogLeNet's multi-crop: 4 scales x 3 squares x (5 crops + the
                                 square resized) x 2 mirrors
Workers hand over uint8 tensors (4x fewer bytes than float32); `normalise` runs on the GPU.
"""

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from wv.jpeg import load_scaled, reduce_factor

CROPS = (1, 10, 144)
CENTRE_RATIO = 0.875  # 224 of 256
SCALES_144 = (256, 288, 320, 352)  # short sides for a 224 crop (Szegedy et al., 2015)


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
