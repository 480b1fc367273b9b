"""The options of `wv synth` (wv.synth), each field with its default and --help line, declared once.
Free of numpy, polars and PIL, so that the command line is built without them."""

from dataclasses import dataclass

from wv.errors import WvError
from wv.options import opt
from wv.runtime import check_seed

MAX_PER_CLASS = 1_000_000  # the plan holds every sample in memory: beyond this, a typo
MAX_IMAGE_SIDE = 2048  # a 2048x2048 image takes about 380 MB while it is drawn


@dataclass
class SynthOptions:
    classes: int = opt(10, "Number of classes (named after WebVision 1.0's).")
    per_class: int = opt(50, "Train images in the largest class.")
    noise: float = opt(0.2, "Fraction of train images that are noisy.")
    outlier_share: float = opt(0.3, "Of the noisy ones, the fraction that are off-topic outliers (the rest are label flips).")
    image_flip_share: float = opt(0.0, "Of the noisy ones, the fraction whose image is another class's but whose text is this class's.")
    offtopic_text: float = opt(0.0, "Fraction of the clean train images given off-topic text (the label stays right).")
    imbalance: float = opt(1.0, "Largest / smallest class size.")
    val_per_class: int = opt(5, "Validation images per class.")
    version: str = "1.0"  # the command line's --version 1 or 2
    seed: int = opt(0, "Every random choice derives from it.")
    width: int = 96  # the command line's --image-size WIDTHxHEIGHT
    height: int = 72
    queries_per_class: int = 2
    flickr_share: float = 0.4
    empty_text: float = 0.04
    foreign_text: float = 0.02
    defects: bool = opt(False, "Also plant broken inputs (missing/empty/truncated/non-image files, bad meta), listed in defects.json.")
    duplicates: float = opt(
        0.0,
        "Plant this fraction of train images again as copies (identical, recompressed, resized, cropped, "
        "colour-jittered; same query, other query or source, and into val), listed in the ground truth.",
    )

    def validate(self) -> None:
        if self.version not in ("1.0", "2.0"):
            raise WvError("--version must be 1 or 2")
        if not 1 <= self.classes <= 99999:
            raise WvError("--classes must be between 1 and 99,999")
        if not (1 <= self.per_class <= MAX_PER_CLASS and 0 <= self.val_per_class <= MAX_PER_CLASS):
            raise WvError(f"--per-class must be 1 to {MAX_PER_CLASS:,} and --val-per-class 0 to {MAX_PER_CLASS:,}")
        if not all(0 <= v <= 1 for v in (self.noise, self.outlier_share, self.image_flip_share, self.offtopic_text)):
            raise WvError("--noise, --outlier-share, --image-flip-share and --offtopic-text must be fractions between 0 and 1")
        if self.outlier_share + self.image_flip_share > 1:
            raise WvError("--outlier-share plus --image-flip-share must be at most 1 (the rest of the noisy images are label flips)")
        if not 0 <= self.duplicates <= 1:
            raise WvError("--duplicates must be a fraction between 0 and 1")
        if self.imbalance < 1:
            raise WvError("--imbalance is the ratio of the largest to the smallest class, at least 1")
        if not (16 <= self.width <= MAX_IMAGE_SIDE and 16 <= self.height <= MAX_IMAGE_SIDE):
            raise WvError(f"--image-size must be between 16x16 and {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (drawing an image takes about 90 bytes per pixel)")
        check_seed(self.seed)
