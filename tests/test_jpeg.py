"""Reduced-scale JPEG decodes (wv.jpeg): the training crop keeps torchvision's random geometry draw
for draw, its pixels stay close to a full-size decode, and the build's full check rejects exactly
what a full-size decode rejects."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms as T

from wv.jpeg import DecodeFailed, draft, draft_for_short_side, load_scaled, reduce_factor, short_side_target
from wv.train.crops import ScaledRandomResizedCrop, image_pixels, jpeg_pixels


def photo_like(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with smooth gradients and some texture (what a photo has; not flat, not noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.sin(x / 7.0) * np.cos(y / 11.0) * 40 + rng.normal(0, 6, (height, width))
    pixels = np.stack([x / width * 200 + texture, y / height * 200 + texture, (x + y) / (width + height) * 255 - texture], axis=-1)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def torchvision_recipe(size: int):
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])


def test_reduce_factor_leaves_at_least_the_output_pixels():
    assert reduce_factor(224, 224, 224, 224) == reduce_factor(40, 35, 224, 224) == 1
    assert reduce_factor(447, 900, 224, 224) == 1
    assert reduce_factor(448, 900, 224, 224) == 2
    assert reduce_factor(1000, 1000, 224, 224) == 4
    assert reduce_factor(1792, 1800, 224, 224) == 8


def test_crop_geometry_and_flips_are_torchvisions_draw_for_draw():
    """Same seed, same crop box and flip: after each call the random generator stands where torchvision's leaves it."""
    image = Image.open(io.BytesIO(photo_like(1024, 768)))
    ours, theirs = ScaledRandomResizedCrop(224), torchvision_recipe(224)
    for seed in range(20):
        torch.manual_seed(seed)
        ours(Image.open(io.BytesIO(photo_like(64, 48))) if seed % 2 else image.copy())
        after_ours = torch.get_rng_state()
        torch.manual_seed(seed)
        theirs(Image.open(io.BytesIO(photo_like(64, 48))).convert("RGB") if seed % 2 else image.copy())
        assert torch.equal(after_ours, torch.get_rng_state())


def test_crop_box_distribution_matches_random_resized_crop():
    """Two-sample KS tests on the crop's area share, aspect ratio and centre: ours (independent seeds) vs torchvision's get_params."""
    image = Image.new("RGB", (1024, 768))
    ours, theirs = ScaledRandomResizedCrop(224), T.RandomResizedCrop(224)
    torch.manual_seed(0)
    a = np.array([ours.box(image.size) for _ in range(3000)], dtype=np.float64)
    torch.manual_seed(1)
    b = np.array([theirs.get_params(image, theirs.scale, theirs.ratio) for _ in range(3000)], dtype=np.float64)
    for column in (lambda m: m[:, 2] * m[:, 3] / (1024 * 768), lambda m: m[:, 3] / m[:, 2], lambda m: m[:, 1] + m[:, 3] / 2, lambda m: m[:, 0] + m[:, 2] / 2):
        assert stats.ks_2samp(column(a), column(b)).pvalue > 0.001


def test_pixels_close_to_the_full_decode_and_within_a_level_at_full_scale():
    data = photo_like(1024, 768)
    ours, theirs = ScaledRandomResizedCrop(224), torchvision_recipe(224)
    reduced, differences = 0, []
    for seed in range(30):
        torch.manual_seed(seed)
        top, left, height, width = T.RandomResizedCrop.get_params(Image.new("RGB", (1024, 768)), [0.08, 1.0], [3 / 4, 4 / 3])
        torch.manual_seed(seed)
        fast = ours(Image.open(io.BytesIO(data)))
        torch.manual_seed(seed)
        full = theirs(Image.open(io.BytesIO(data)).convert("RGB"))
        assert fast.shape == full.shape == (3, 224, 224) and fast.dtype == torch.uint8
        difference = (fast.float() - full.float()).abs().mean().item()
        if reduce_factor(width, height, 224, 224) == 1:  # torch's resize: Pillow's filter, rounding that can differ by a level
            signed = fast.int() - full.int()
            assert signed.abs().max() <= 1 and difference < 0.25 and abs(signed.float().mean().item()) < 0.01, difference
        else:
            reduced += 1
            differences.append(difference)
    assert reduced >= 10
    assert np.median(differences) < 2.5 and max(differences) < 5, differences


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_simplejpegs_decode_gives_pillows_pixels_at_every_scale(subsampling, progressive):
    out = io.BytesIO()
    Image.open(io.BytesIO(photo_like(341, 257, seed=subsampling))).save(out, format="JPEG", quality=85, subsampling=subsampling, progressive=progressive)
    for reduce in (1, 2, 4, 8):
        pixels, used = jpeg_pixels(Image.open(io.BytesIO(out.getvalue())), reduce)
        image, pillows = load_scaled(Image.open(io.BytesIO(out.getvalue())), reduce)
        assert used == pillows == reduce and pixels is not None and torch.equal(pixels, image_pixels(image))


def test_other_images_and_damaged_bytes_are_left_to_pillow():
    """Grayscale, CMYK, PNG, decoded images and bytes libjpeg warns about: no pixels from simplejpeg (Pillow decodes, or says why not)."""
    images = []
    for mode, fmt in (("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG")):
        out = io.BytesIO()
        Image.new(mode, (64, 48)).save(out, format=fmt)
        images.append(Image.open(io.BytesIO(out.getvalue())))
    loaded = Image.open(io.BytesIO(photo_like(64, 48)))
    loaded.load()
    truncated = photo_like(800, 600)
    images += [loaded, Image.open(io.BytesIO(truncated[: len(truncated) // 2]))]
    assert [jpeg_pixels(image) for image in images] == [(None, 1)] * 5
    with pytest.raises(DecodeFailed):
        torch.manual_seed(0)
        ScaledRandomResizedCrop(224)(Image.open(io.BytesIO(truncated[: len(truncated) // 2])))


def test_full_scale_crops_are_the_same_whoever_decodes():
    """simplejpeg's decode (bytes) and Pillow's (an image already decoded) give the same crop, pixel for pixel."""
    data = photo_like(340, 256)
    transform = ScaledRandomResizedCrop(224)
    for seed in range(10):
        torch.manual_seed(seed)
        fast = transform(Image.open(io.BytesIO(data)))
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        torch.manual_seed(seed)
        assert torch.equal(fast, transform(decoded))


def test_non_jpeg_and_decoded_images_are_left_at_full_size():
    png = io.BytesIO()
    Image.new("RGBA", (900, 900), (10, 20, 30, 128)).save(png, format="PNG")
    image, used = load_scaled(Image.open(io.BytesIO(png.getvalue())), 4)
    assert used == 1 and image.size == (900, 900) and image.mode == "RGB"
    loaded = Image.open(io.BytesIO(photo_like(800, 600)))
    loaded.load()
    assert draft(loaded, 4) == 1 and loaded.size == (800, 600)
    lazy = Image.open(io.BytesIO(photo_like(800, 600)))
    draft_for_short_side(lazy, 140)
    assert lazy.size == (200, 150)


def test_grayscale_and_cmyk_jpegs_come_out_rgb():
    for mode in ("L", "CMYK"):
        out = io.BytesIO()
        Image.new(mode, (640, 480)).save(out, format="JPEG")
        torch.manual_seed(0)
        tensor = ScaledRandomResizedCrop(64)(Image.open(io.BytesIO(out.getvalue())))
        assert tensor.shape == (3, 64, 64)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_damaged_bytes_fail_at_every_scale(cut):
    data = photo_like(800, 600)
    truncated = data[: int(len(data) * cut)]
    for reduce in (1, 2, 4, 8):
        with pytest.raises(DecodeFailed):
            load_scaled(Image.open(io.BytesIO(truncated)), reduce)


def test_evaluation_preprocessing_decodes_at_the_scale_its_resize_allows():
    from open_clip.transform import image_transform

    from wv.models import eval_transform

    ours, clip = eval_transform({"size": 112, "mean": [0.5] * 3, "std": [0.25] * 3}), image_transform(224, is_train=False)
    assert short_side_target(ours) == 112 and short_side_target(clip) == 224
    assert short_side_target(T.Compose([T.CenterCrop(10), T.Resize(5)])) is None
    assert short_side_target(T.Compose([T.Resize((20, 30))])) is None
    data = photo_like(1000, 600)
    lazy = Image.open(io.BytesIO(data))
    draft_for_short_side(lazy, 112)
    assert lazy.size == (250, 150)
    fast, full = ours(lazy), ours(Image.open(io.BytesIO(data)))
    assert fast.shape == full.shape == (3, 112, 112)
    assert (fast - full).abs().mean().item() < 0.03  # normalised units (std 0.25): under 2 of 255 levels


def test_bytes_give_the_same_crops_and_draws_as_the_opened_image():
    """The stream hands over bytes (the header read by libjpeg, not Pillow): same pixels, same generator state after."""
    grey = io.BytesIO()
    Image.new("L", (500, 470), 90).save(grey, format="JPEG")
    png = io.BytesIO()
    Image.new("RGB", (600, 500), (1, 2, 3)).save(png, format="PNG")
    transform = ScaledRandomResizedCrop(224)
    for data in (photo_like(1024, 768), photo_like(340, 256), grey.getvalue(), png.getvalue()):
        for seed in range(8):
            torch.manual_seed(seed)
            from_bytes = transform(data)
            state = torch.get_rng_state()
            torch.manual_seed(seed)
            assert torch.equal(from_bytes, transform(Image.open(io.BytesIO(data))))
            assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("data, reason", [(b"not an image", "no image format PIL knows"), (b"", "no image format PIL knows")])
def test_bytes_that_are_no_image_fail_with_pillows_reason(data, reason):
    with pytest.raises(DecodeFailed, match=reason):
        ScaledRandomResizedCrop(224)(data)


def test_truncated_bytes_fail_as_they_do_for_pillow():
    data = photo_like(800, 600)
    for cut in (0.3, 0.95):
        torch.manual_seed(0)
        with pytest.raises(DecodeFailed, match="truncated"):
            ScaledRandomResizedCrop(224)(data[: int(len(data) * cut)])
