"""Reading planned samples from local webdataset tars by byte range, and decoding their images.

A batch's draws arrive sorted by (shard, offset); draws whose byte ranges touch are read with one
`pread`, so a shard whose samples are all drawn is read in one sweep and a shard with a few drawn
samples costs a few small reads. Members are split out of the ranges with a minimal ustar/pax
parser (no tarfile object per sample) and grouped into samples with webdataset's own key rule.
"""

import io
import os
from collections import OrderedDict

import numpy as np
from PIL import Image
from webdataset.tariterators import base_plus_ext

from wv.errors import WvError

BLOCK = 512
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "gif", "tif", "tiff")


def split_members(chunk) -> dict:
    """The members of one sample's byte range -> {'__key__': key, ext: bytes, ...}."""
    sample, position, end, long_name = {}, 0, len(chunk), None
    while position + BLOCK <= end:
        header = chunk[position:position + BLOCK]
        if header[0] == 0:
            break
        size = int(bytes(header[124:136]).strip(b"\0 ") or b"0", 8)
        data = chunk[position + BLOCK:position + BLOCK + size]
        position += BLOCK + -(-size // BLOCK) * BLOCK
        kind = bytes(header[156:157])
        if kind in (b"x", b"L"):
            long_name = pax_path(bytes(data)) if kind == b"x" else bytes(data).rstrip(b"\0").decode()
            continue
        if kind not in (b"0", b"\0", b""):
            continue
        name = long_name or ustar_name(header)
        long_name = None
        key, ext = base_plus_ext(name)
        if key is None:
            continue
        if sample.setdefault("__key__", key) != key:
            raise WvError("a planned byte range holds two samples; the manifest does not match the shard (run `wv shard verify`)")
        sample[ext.lower()] = bytes(data)
    return sample


def ustar_name(header) -> str:
    name = bytes(header[0:100]).split(b"\0", 1)[0].decode()
    prefix = bytes(header[345:500]).split(b"\0", 1)[0].decode() if bytes(header[257:262]) == b"ustar" else ""
    return f"{prefix}/{name}" if prefix else name


def pax_path(records: bytes) -> str | None:
    for line in records.decode("utf-8", "replace").splitlines():
        _, _, item = line.partition(" ")
        field, _, value = item.partition("=")
        if field == "path":
            return value
    return None


class RangeReader:
    """Reads byte ranges of local shard files, keeping the most recently used files open."""

    def __init__(self, paths, max_open: int = 64):
        self.paths, self.max_open = list(paths), max_open
        self.files: OrderedDict[int, int] = OrderedDict()
        self.bytes_read = 0

    def fd(self, shard: int) -> int:
        if shard in self.files:
            self.files.move_to_end(shard)
            return self.files[shard]
        try:
            fd = os.open(self.paths[shard], os.O_RDONLY)
        except OSError as error:
            raise WvError(f"cannot open shard {self.paths[shard]}: {error.strerror}") from None
        self.files[shard] = fd
        if len(self.files) > self.max_open:
            os.close(self.files.popitem(last=False)[1])
        return fd

    def read(self, shards: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> list[dict]:
        """The samples at these ranges (sorted by shard, offset), one dict per range, in order."""
        samples, n, i = [], len(shards), 0
        while i < n:
            j, start, end = i, int(offsets[i]), int(offsets[i] + lengths[i])
            while j + 1 < n and shards[j + 1] == shards[i] and offsets[j + 1] <= end:
                j += 1
                end = max(end, int(offsets[j] + lengths[j]))
            chunk = os.pread(self.fd(int(shards[i])), end - start, start)
            if len(chunk) != end - start:
                raise WvError(f"{self.paths[shards[i]]} is shorter than the manifest says; run `wv shard verify`")
            self.bytes_read += end - start
            view = memoryview(chunk)
            samples += [split_members(view[offsets[k] - start:offsets[k] - start + lengths[k]]) for k in range(i, j + 1)]
            i = j + 1
        return samples

    def close(self) -> None:
        while self.files:
            os.close(self.files.popitem()[1])

    def __del__(self):
        self.close()


def image_bytes(sample: dict) -> bytes:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    raise WvError(f"sample {sample.get('__key__')!r} has no image member (looked for .{', .'.join(IMAGE_EXTENSIONS)})")


def decode_image(data: bytes) -> Image.Image:
    """PIL image in RGB."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def label_of(sample: dict) -> int:
    for ext in ("cls", "label", "class"):
        if ext in sample:
            try:
                return int(sample[ext])
            except ValueError:
                break
    return -1
