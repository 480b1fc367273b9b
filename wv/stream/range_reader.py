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
from wv.jpeg import open_failure

BLOCK = 512
REGULAR, OLD_REGULAR, PAX, GNU_LONG_NAME = ord("0"), 0, ord("x"), ord("L")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "gif", "tif", "tiff")


def split_members(chunk: bytes, start: int = 0, end: int | None = None) -> dict:
    """The members of one sample at chunk[start:end] -> {'__key__': key, ext: bytes, ...}.

    Keys and extensions follow webdataset's rule (key up to the first dot of the file name)."""
    sample, position, long_name = {}, start, None
    end = len(chunk) if end is None else end
    while position + BLOCK <= end:
        header = position
        if chunk[header] == 0:
            break
        size = int(chunk[header + 124 : header + 136].strip(b"\0 ") or b"0", 8)
        kind = chunk[header + 156]
        data = header + BLOCK
        position = data + -(-size // BLOCK) * BLOCK
        if kind in (PAX, GNU_LONG_NAME):
            long_name = pax_path(chunk[data : data + size]) if kind == PAX else chunk[data : data + size].rstrip(b"\0").decode()
            continue
        if kind not in (REGULAR, OLD_REGULAR):
            continue
        name, long_name = long_name or ustar_name(chunk, header), None
        key, ext = base_plus_ext(name)
        if key is None:
            continue
        if sample.setdefault("__key__", key) != key:
            raise WvError("a planned byte range holds two samples; the manifest does not match the shard (run `wv shard verify`)")
        sample[ext.lower()] = chunk[data : data + size]
    return sample


def ustar_name(chunk: bytes, header: int) -> str:
    nul = chunk.find(b"\0", header, header + 100)
    name = chunk[header : nul if nul >= 0 else header + 100].decode()
    if chunk[header + 257 : header + 262] == b"ustar" and chunk[header + 345]:
        prefix = chunk[header + 345 : header + 500].split(b"\0", 1)[0].decode()
        return f"{prefix}/{name}"
    return name


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
            for k in range(i, j + 1):
                at = int(offsets[k]) - start
                samples.append(self.sample(chunk, at, at + int(lengths[k]), int(shards[k]), int(offsets[k])))
            i = j + 1
        return samples

    def sample(self, chunk: bytes, start: int, end: int, shard: int, offset: int) -> dict:
        """One planned range as a sample; a range where no sample starts (a wrong manifest) is one sentence."""
        try:
            sample = split_members(chunk, start, end)
        except (ValueError, UnicodeDecodeError):
            sample = {}
        if "__key__" not in sample:
            raise WvError(f"{self.paths[shard]} holds no sample at byte {offset}, where the manifest says one starts; run `wv shard verify`")
        return sample

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


def decode_image(data: bytes, key: str | None = None, shard: str | None = None) -> Image.Image:
    """PIL image in RGB; an image that cannot be decoded is a WvError naming its key and shard."""
    image = open_image(data, key, shard)
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as error:  # PIL raises many types for damaged bytes
        raise undecodable(error, key, shard) from None


def open_image(data: bytes, key: str | None = None, shard: str | None = None) -> Image.Image:
    """The image with its header read and its pixels not yet decoded (a decoder can still be told a scale)."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception as error:
        raise undecodable(error, key, shard) from None


def undecodable(error: Exception, key: str | None, shard: str | None) -> WvError:
    where = f" of {shard}" if shard else ""
    return WvError(f"image {key!r}{where} cannot be decoded ({open_failure(error)}); run `wv shard verify`")


def label_of(sample: dict) -> int:
    for ext in ("cls", "label", "class"):
        if ext in sample:
            try:
                return int(sample[ext])
            except ValueError:
                break
    return -1
