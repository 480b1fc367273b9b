"""Synthetic WebVision: the real on-disk layout (1.0 or 2.0), images and web text with known noise.

Every class has a visual style (hue, pattern, orientation, frequency) that a small CNN learns in
seconds, and a vocabulary of its own (real English words from WordNet for the 1,000 WebVision 1.0
classes, see tools/make_class_words.py, padded with made-up words) mixed with shared web words. Noise is planted and written down:
  flip     image and text of another class, filed under this class (true_label = that class)
  outlier  an off-topic image and off-topic text (true_label = -1)
  image_flip  another class's image with this class's text (true_label = that class; --image-flip-share)
  offtopic_text  this class's image with off-topic text: NOT a wrong label (true_label = label,
           is_noisy false; --offtopic-text), a trap for scorers that read only the text
Clean samples sometimes have empty or non-English text. `defects=True` also plants broken inputs
(missing, empty, truncated and non-image files, a malformed meta file, a missing meta record, an
unparseable list line) and lists them in defects.json.
"""

import colorsys
import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from wv.errors import WvError
from wv.parallel import check_workers, map_jobs
from wv.shards.keys import sample_key
from wv.synth_options import SynthOptions

SHARED_WORDS = (
    "photo image picture free download hd wallpaper stock jpg best new high quality online view share like "
    "com www beautiful amazing great top collection gallery size the a of and in with for on at by this is"
).split()
CAMERA_TAGS = "nikon canon 2010 2012 travel summer flickr iphone bw".split()
OFFTOPIC_WORDS = (
    "insurance loan mortgage credit casino poker bitcoin forex diet pills recipe cheap discount coupon seo marketing login password software crack keygen dating ringtone lottery"
).split()
FOREIGN_CHARS = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
SYLLABLES = "ka lo mi nu re sa ti vo ze ba de fi go hu ja ke lu ma ne po qu ri su ta vi wo xa yo zu".split()
PATTERNS = ("stripes", "checker", "rings", "dots")
VOCABULARY = 24  # words per class: WordNet words of the synset, padded with made-up ones


@dataclass
class ClassStyle:
    label: int
    synset: str
    names: str
    hue: float
    dark_hue: float
    pattern: str
    angle: float
    frequency: float
    words: list


def class_styles(opts: SynthOptions) -> list[ClassStyle]:
    data = resources.files("wv").joinpath("data")
    real = data.joinpath("webvision1_synsets.txt").read_text().splitlines()
    real_words = dict(line.split("\t") for line in data.joinpath("webvision1_class_words.txt").read_text().splitlines())
    rng = np.random.default_rng([opts.seed, 1])
    styles = []
    for label in range(opts.classes):
        if label < len(real):
            synset, _, names = real[label].partition(" ")
        else:
            synset, names = f"n9{label:07d}", f"synthetic class {label}"
        words = real_words.get(synset, "").split()
        words += ["".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))) for _ in range(max(4, VOCABULARY - len(words)))]
        styles.append(
            ClassStyle(
                label,
                synset,
                names,
                hue=(label * 0.618034) % 1.0,
                dark_hue=float(rng.uniform(0, 1)),
                pattern=PATTERNS[label % len(PATTERNS)],
                angle=float(rng.uniform(0, math.pi)),
                frequency=float(rng.uniform(2.0, 6.0)),
                words=words,
            )
        )
    return styles


# -- images -------------------------------------------------------------------------------------
def render_image(style: ClassStyle | None, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A class-styled image (style given) or an off-topic one (style None), as uint8 HxWx3."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = x / width, y / height
    if style is None:
        coarse = rng.uniform(0, 255, size=(3, 4, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    else:
        t = (pattern_field(style, rng, x, y) + 1) / 2
        hue = (style.hue + rng.normal(0, 0.02)) % 1.0
        light = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 0.9), rng.uniform(0.8, 1.0))) * 255
        dark_hue = (style.dark_hue + rng.normal(0, 0.02)) % 1.0
        dark = np.array(colorsys.hsv_to_rgb(dark_hue, rng.uniform(0.7, 1.0), rng.uniform(0.25, 0.45))) * 255
        base = t[..., None] * light + (1 - t[..., None]) * dark
        add_blob(base, rng, x, y)
    noisy = base + rng.normal(0, 10, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def pattern_field(style: ClassStyle, rng, x, y) -> np.ndarray:
    angle = style.angle + rng.normal(0, 0.1)
    freq = style.frequency * rng.uniform(0.9, 1.1)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    phase = rng.uniform(0, 2 * math.pi)
    if style.pattern == "stripes":
        return np.sin(2 * math.pi * freq * u + phase)
    if style.pattern == "checker":
        return np.sign(np.sin(2 * math.pi * freq * u + phase) * np.sin(2 * math.pi * freq * v))
    if style.pattern == "rings":
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        return np.sin(2 * math.pi * freq * 1.5 * np.hypot(x - cx, y - cy) + phase)
    return np.clip(np.cos(2 * math.pi * freq * u + phase) + np.cos(2 * math.pi * freq * v), -1, 1)


def add_blob(base: np.ndarray, rng, x, y) -> None:
    """A random distractor disc, so the class is told by its pattern, not by every pixel."""
    cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
    mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    base[mask] = rng.uniform(0, 255, size=3)


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


# -- text ---------------------------------------------------------------------------------------
def words_from(rng, own: list, n: int, own_share: float, pool: list = SHARED_WORDS) -> list:
    return [str(rng.choice(own)) if rng.random() < own_share else str(rng.choice(pool)) for _ in range(n)]


def render_text(style: ClassStyle | None, kind: str, source: str, rng) -> dict:
    """title, description and (Flickr) tags for one image."""
    if kind == "empty":
        return {"title": "", "description": "", "tags": []}
    if kind == "foreign":
        foreign = lambda n: "".join(rng.choice(list(FOREIGN_CHARS), size=n))  # noqa: E731
        return {"title": foreign(6), "description": foreign(20), "tags": [foreign(3)] if source == "flickr" else []}
    own = style.words if style is not None else OFFTOPIC_WORDS
    text = {
        "title": " ".join(words_from(rng, own, int(rng.integers(2, 7)), 0.7)).capitalize(),
        "description": " ".join(words_from(rng, own, int(rng.integers(8, 26)), 0.45)),
        "tags": [],
    }
    if source == "flickr":
        text["tags"] = words_from(rng, own, int(rng.integers(3, 9)), 0.7, CAMERA_TAGS)
    return text


# -- the sample plan ----------------------------------------------------------------------------
def class_sizes(opts: SynthOptions, rng) -> list[int]:
    if opts.classes == 1 or opts.imbalance == 1:
        return [opts.per_class] * opts.classes
    shrink = [opts.imbalance ** (-i / (opts.classes - 1)) for i in range(opts.classes)]
    order = rng.permutation(opts.classes)
    return [max(1, round(opts.per_class * shrink[order[c]])) for c in range(opts.classes)]


def plan_samples(opts: SynthOptions) -> list[dict]:
    rng = np.random.default_rng([opts.seed, 2])
    digits = 5 if opts.version == "2.0" else 4
    used_ids, samples = set(), []
    for label, size in enumerate(class_sizes(opts, rng)):
        for index in range(size):
            source = "flickr" if rng.random() < opts.flickr_share else "google"
            query_id = label * opts.queries_per_class + int(rng.integers(opts.queries_per_class)) + 1
            noise = "clean"
            if rng.random() < opts.noise:
                noise = noise_kind(opts, rng.random())
            elif opts.offtopic_text and rng.random() < opts.offtopic_text:  # drawn only when asked: other sets stay as they were
                noise = "offtopic_text"
            true_label = {"outlier": -1}.get(noise, label)
            if noise in ("flip", "image_flip"):
                true_label = int((label + rng.integers(1, opts.classes)) % opts.classes)
            draw = rng.random()
            text_kind = "empty" if draw < opts.empty_text else "foreign" if draw < opts.empty_text + opts.foreign_text else "web"
            samples.append(
                {
                    "split": "train",
                    "source": source,
                    "query": f"q{query_id:0{digits}d}",
                    "query_id": query_id,
                    "image_id": new_image_id(source, rng, used_ids),
                    "label": label,
                    "true_label": true_label,
                    "noise": noise,
                    "text_kind": text_kind if noise == "clean" else "web",
                    "seed": [opts.seed, 3, label, index],
                    "text_label": {"image_flip": label, "offtopic_text": -1}.get(noise, true_label),
                }
            )
    for index in range(opts.val_per_class * opts.classes):
        label = index % opts.classes
        samples.append(
            {
                "split": "val",
                "source": "val",
                "query": "",
                "query_id": 0,
                "image_id": f"val{index + 1:06d}",
                "label": label,
                "true_label": label,
                "noise": "clean",
                "text_kind": "none",
                "seed": [opts.seed, 4, index],
                "text_label": label,
            }
        )
    return samples + plan_copies(opts, samples, used_ids, digits) if opts.duplicates else samples


COPY_KINDS = ("identical", "recompressed", "resized", "cropped", "jittered")
EXACT_KINDS = ("identical", "recompressed", "resized")  # the same pixels at low resolution: `wv score duplicates` calls them exact
COPY_PLACES = ("same query", "other query", "other source", "val")


def plan_copies(opts: SynthOptions, samples: list, used_ids: set, digits: int) -> list[dict]:
    """Copies of round(duplicates x train) train images, each of a distinct original (never a copy).
    Its own random stream (seed, 7), so the rest of the plan is the same as without copies."""
    rng = np.random.default_rng([opts.seed, 7])
    train = [i for i, s in enumerate(samples) if s["split"] == "train"]
    count = min(len(train), round(opts.duplicates * len(train)))
    copies = []
    for n, index in enumerate(sorted(rng.choice(train, size=count, replace=False).tolist())):
        original = samples[index]
        kind, place = COPY_KINDS[int(rng.integers(len(COPY_KINDS)))], COPY_PLACES[int(rng.integers(len(COPY_PLACES)))]
        if place == "val" and original["noise"] != "clean":
            place = "same query"  # a val image carries its true label
        copy = {**original, "copy_of": index, "copy_kind": kind, "copy_place": place, "copy_seed": [opts.seed, 8, n]}
        if place == "val":
            copy.update(split="val", source="val", query="", query_id=0, image_id=f"valcopy{n + 1:06d}", label=original["true_label"], text_kind="none")
        else:
            source = original["source"]
            if place == "other source":
                source = "google" if source == "flickr" else "flickr"
            query_id = original["query_id"]
            if place == "other query" and opts.queries_per_class > 1:
                first = original["label"] * opts.queries_per_class + 1
                query_id = first + (query_id - first + 1 + int(rng.integers(opts.queries_per_class - 1))) % opts.queries_per_class
            copy.update(source=source, query_id=query_id, query=f"q{query_id:0{digits}d}", image_id=new_image_id(source, rng, used_ids))
        copies.append(copy)
    return copies


def copy_pixels(pixels: np.ndarray, kind: str, rng) -> tuple[np.ndarray, int]:
    """A copy as the web makes them: (pixels, JPEG quality)."""
    height, width = pixels.shape[:2]
    if kind == "recompressed":
        return pixels, int(rng.integers(55, 75))
    if kind == "resized":
        scale = rng.uniform(0.5, 0.8)
        size = (max(16, round(width * scale)), max(16, round(height * scale)))
        return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC)), 90
    if kind == "cropped":
        dx, dy = (max(1, round(side * rng.uniform(0.04, 0.08))) for side in (width, height))
        left, top = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
        return pixels[top : top + height - dy, left : left + width - dx].copy(), 90
    if kind == "jittered":
        gain, offset = rng.uniform(0.88, 1.12, size=3), rng.uniform(-12, 12, size=3)
        return np.clip(pixels.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8), 90
    return pixels, 90


def noise_kind(opts: SynthOptions, draw: float) -> str:
    if draw < opts.outlier_share or opts.classes == 1:
        return "outlier"
    return "image_flip" if draw < opts.outlier_share + opts.image_flip_share else "flip"


def new_image_id(source: str, rng, used: set) -> str:
    alphabet = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    while True:
        if source == "flickr":
            image_id = str(int(rng.integers(1_000_000_000, 9_999_999_999)))
        else:
            image_id = "".join(rng.choice(alphabet, size=13)) + "M"
        if image_id not in used:
            used.add(image_id)
            return image_id


# -- writing the layout -------------------------------------------------------------------------
def image_folder(opts: SynthOptions, sample: dict) -> str:
    if sample["split"] == "val":
        return "val_images_256" if opts.version == "2.0" else "val_images_resized"
    if opts.version == "2.0":
        return f"train_images_256/{sample['source']}_images_resized/{sample['query']}"
    return f"{sample['source']}/{sample['query']}"


def render_sample(job) -> tuple[str, dict]:
    """Pool task: write one sample's image; return its key and web text."""
    opts, styles, out, sample = job
    rng = np.random.default_rng(sample["seed"])
    truth = sample["true_label"]
    style = styles[truth] if truth is not None and truth >= 0 else None
    path = Path(out) / image_folder(opts, sample) / f"{sample['image_id']}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels, quality = render_image(style, rng, opts.width, opts.height), 90
    if "copy_kind" in sample:  # the original's pixels (same seed), changed; its own web text
        rng = np.random.default_rng(sample["copy_seed"])
        pixels, quality = copy_pixels(pixels, sample["copy_kind"], rng)
    path.write_bytes(jpeg_bytes(pixels, quality))
    about = sample["text_label"]
    text_style = styles[about] if about is not None and about >= 0 else None
    text = render_text(text_style, sample["text_kind"], sample["source"], rng) if sample["split"] == "train" else {}
    return sample_key(sample["source"], sample["query"], sample["image_id"]), text


def write_synth(out: str | Path, opts: SynthOptions, workers: int = 1, progress: bool = False) -> dict:
    opts.validate()
    check_workers(workers)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise WvError(f"{out} exists and is not empty; wv synth writes into a new folder")
    styles = class_styles(opts)
    samples = plan_samples(opts)
    texts = dict(map_jobs(render_sample, ((opts, styles, str(out), s) for s in samples), workers, window=64 * max(1, workers)))
    write_info(out, opts, styles, samples)
    write_meta(out, opts, samples, texts)
    truth = write_ground_truth(out, samples)
    defects = plant_defects(out, opts, samples) if opts.defects else {}
    figures = {
        "out": str(out),
        "train": sum(s["split"] == "train" for s in samples),
        "val": sum(s["split"] == "val" for s in samples),
        "noisy": int(truth["is_noisy"].sum()),
        "classes": opts.classes,
        "version": opts.version,
        "defects": defects,
    }
    if opts.duplicates:
        figures["duplicates"] = {place: sum(s.get("copy_place") == place for s in samples) for place in COPY_PLACES}
    return figures


def write_info(out: Path, opts: SynthOptions, styles: list, samples: list) -> None:
    info = out / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "synsets.txt").write_text("".join(f"{s.synset} {s.names}\n" for s in styles))
    base = 0 if opts.version == "2.0" else 1
    n_queries = opts.classes * opts.queries_per_class
    (info / "queries_synsets_map.txt").write_text("".join(f"{q} {(q - 1) // opts.queries_per_class + base}\n" for q in range(1, n_queries + 1)))
    for source in ("google", "flickr"):
        names = [styles[(q - 1) // opts.queries_per_class].names.split(",") for q in range(1, n_queries + 1)]
        queries = [f"{q} {n[(q - 1) % opts.queries_per_class % len(n)].strip()}\n" for q, n in zip(range(1, n_queries + 1), names)]
        (info / f"queries_{source}.txt").write_text("".join(queries))
        train = [s for s in samples if s["source"] == source]
        (info / f"train_filelist_{source}.txt").write_text("".join(f"{source}/{s['query']}/{s['image_id']}.jpg {s['label']}\n" for s in train))
    val = [s for s in samples if s["split"] == "val"]
    (info / "val_filelist.txt").write_text("".join(f"{s['image_id']}.jpg {s['label']}\n" for s in val))


def write_meta(out: Path, opts: SynthOptions, samples: list, texts: dict) -> None:
    """meta/<source>/<query>.json (a JSON array per query) and train_meta_list_<source>.txt."""
    by_query: dict[tuple, list] = {}
    for s in samples:
        if s["split"] == "train":
            by_query.setdefault((s["source"], s["query"]), []).append(s)
    rows = {}
    for (source, query), members in by_query.items():
        records = []
        for rank, s in enumerate(members, start=1):
            text = texts[sample_key(s["source"], s["query"], s["image_id"])]
            records.append(meta_record(opts, s, text, rank))
            rows[(source, s["image_id"])] = (f"{source}/{query}.json", rank)
        path = out / "meta" / source / f"{query}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False))
    for source in ("google", "flickr"):
        lines = [f"{rows[(source, s['image_id'])][0]} {rows[(source, s['image_id'])][1]}\n" for s in samples if s["source"] == source]
        (out / "info" / f"train_meta_list_{source}.txt").write_text("".join(lines))


def meta_record(opts: SynthOptions, sample: dict, text: dict, rank: int) -> dict:
    url = f"http://images.example.com/{sample['query']}/{sample['image_id']}.jpg"
    if sample["source"] == "google":
        return {
            "id": sample["image_id"],
            "title": text["title"],
            "description": text["description"],
            "url": url,
            "page_url": url.replace("images.", "www.").replace(".jpg", ".html"),
            "site": "www.example.com",
            "rank": str(rank),
        }
    tags = " ".join(text["tags"]) if opts.version == "2.0" else text["tags"]
    return {"id": sample["image_id"], "title": text["title"], "description": text["description"], "tags": tags, "url": url}


def write_ground_truth(out: Path, samples: list) -> pl.DataFrame:
    """One row per sample; with planted copies also duplicate_of (the original's key), copy_kind
    (identical, recompressed, resized, cropped, jittered) and copy_place (same query, other query,
    other source, val)."""
    key = lambda s: sample_key(s["source"], s["query"], s["image_id"])  # noqa: E731
    copies = any("copy_kind" in s for s in samples)
    truth = pl.DataFrame(
        [
            {
                "__key__": key(s),
                "split": s["split"],
                "source": s["source"],
                "query": s["query"],
                "image_id": s["image_id"],
                "label": s["label"],
                "true_label": s["true_label"],
                "is_noisy": s["true_label"] != s["label"],
                "noise": s["noise"],
                "text_kind": s["text_kind"],
                **({"duplicate_of": key(samples[s["copy_of"]]) if "copy_of" in s else None, "copy_kind": s.get("copy_kind"), "copy_place": s.get("copy_place")} if copies else {}),
            }
            for s in samples
        ],
        infer_schema_length=None,
    )
    truth.write_parquet(out / "ground_truth.parquet")
    return truth


def plant_defects(out: Path, opts: SynthOptions, samples: list) -> dict:
    """Break a few inputs on purpose; each kind lands on a different train sample."""
    train = [s for s in samples if s["split"] == "train" and s["noise"] == "clean"]
    if len(train) < 6:
        raise WvError("--defects needs at least 6 clean train samples")
    path = lambda s: out / image_folder(opts, s) / f"{s['image_id']}.jpg"  # noqa: E731
    key = lambda s: sample_key(s["source"], s["query"], s["image_id"])  # noqa: E731
    missing, empty, truncated, not_image, no_record = train[0], train[1], train[2], train[3], train[4]
    path(missing).unlink()
    path(empty).write_bytes(b"")
    data = path(truncated).read_bytes()
    path(truncated).write_bytes(data[: len(data) // 2])
    path(not_image).write_bytes(b"<html><body>404 Not Found</body></html>\n")
    meta_file = out / "meta" / no_record["source"] / f"{no_record['query']}.json"
    records = [r for r in json.loads(meta_file.read_text()) if r["id"] != no_record["image_id"]]
    meta_file.write_text(json.dumps(records, ensure_ascii=False))
    bad_query = next(s for s in train[5:] if (s["source"], s["query"]) != (no_record["source"], no_record["query"]))
    bad_meta = out / "meta" / bad_query["source"] / f"{bad_query['query']}.json"
    bad_meta.write_text(bad_meta.read_text()[:40])
    with open(out / "info" / f"train_filelist_{missing['source']}.txt", "a") as f:
        f.write("this line has no label\n")
    defects = {
        "missing file": key(missing),
        "empty file": key(empty),
        "truncated image": key(truncated),
        "not an image": key(not_image),
        "missing meta record": key(no_record),
        "malformed meta file": f"{bad_query['source']}/{bad_query['query']}",
        "unparseable list line": missing["source"],
    }
    (out / "defects.json").write_text(json.dumps(defects, indent=2) + "\n")
    return defects
