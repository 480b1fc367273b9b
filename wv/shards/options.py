"""The options of `wv shard build`, each field with its default and --help line, declared once. Free of
polars and PIL, so that the command line is built without them."""

from dataclasses import dataclass
from pathlib import Path

from wv.errors import WvError
from wv.options import SPLITS, opt
from wv.runtime import check_seed

SOURCES = ("google", "flickr")  # WebVision's train sources
CHECKS = ("full", "cheap")  # how `wv shard build` checks an image (wv.shards.images)


@dataclass(frozen=True)
class BuildOptions:
    split: str = opt("train", choices=SPLITS)
    sources: tuple[str, ...] | None = opt(None, "Comma-separated train sources (google,flickr). Default: every source with a file list.")
    shard_size: int = opt(1000, "Samples planned per shard (rejects make some shards smaller).")
    resize: int | None = opt(None, "Downscale images whose short side is longer than this (re-encoded as JPEG).")
    check: str = opt(
        "full",
        "full: decode every image (catches missing, empty, non-image and truncated files, and any file the "
        "decoder refuses, e.g. damaged Huffman tables). cheap: header + end-of-image marker, no decode (catches "
        "missing, empty, non-image and truncated files; not damage inside the image; much faster).",
        choices=CHECKS,
    )
    seed: int = opt(0, "Seed of the shuffle that mixes classes across shards.")
    images_dir: str | None = opt(None, "Folder (relative to WEBVISION_ROOT) holding the split's images, if not one of the usual names.")
    quality: int = opt(90, "JPEG quality for resized or re-encoded images.")

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise WvError(f"unknown split {self.split!r}; choose train or val")
        if self.check not in CHECKS:
            raise WvError(f"unknown check {self.check!r}; choose full or cheap")
        if self.shard_size < 1:
            raise WvError("--shard-size must be at least 1")
        if self.resize is not None and self.resize < 8:
            raise WvError("--resize must be at least 8 pixels")
        if not 1 <= self.quality <= 100:
            raise WvError("--quality must be between 1 and 100")
        check_seed(self.seed)
        unknown = set(self.sources or ()) - set(SOURCES)
        if unknown:
            raise WvError(f"unknown source {sorted(unknown)[0]!r}; WebVision sources are google and flickr")
        if self.images_dir is not None and (Path(self.images_dir).is_absolute() or ".." in Path(self.images_dir).parts):
            raise WvError(f"--images-dir {self.images_dir!r} must be a folder inside WEBVISION_ROOT, given relative to it")
