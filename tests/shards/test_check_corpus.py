"""The build's full check decodes a JPEG kept as it is at 1/8 scale (wv.shards.images.CHECK_REDUCE):
over a corpus of damaged files it must give exactly the verdicts, reasons included, of a full-size decode."""

import io

import numpy as np
import pytest
from PIL import Image

from wv.shards import images
from wv.shards.images import BadImage, prepare_image


def jpeg(mode="RGB", size=(203, 151), **save) -> bytes:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = (np.sin(x / 5.0) * np.cos(y / 9.0) * 60 + 120 + rng.normal(0, 12, (size[1], size[0]))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(np.stack([base, np.flipud(base), base.T[: size[1], : size[0]] if size[0] == size[1] else base[::-1, ::-1]], -1))
    out = io.BytesIO()
    image.convert(mode).save(out, format="JPEG", **save)
    return out.getvalue()


def variants() -> dict:
    return {
        "baseline": jpeg(quality=90),
        "444": jpeg(quality=95, subsampling=0),
        "progressive": jpeg(progressive=True, quality=85),
        "optimised": jpeg(optimize=True),
        "grey": jpeg("L"),
        "cmyk": jpeg("CMYK"),
        "restarts": jpeg(quality=80, restart_marker_rows=1),
    }


def scan_start(data: bytes) -> int:
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def damaged(name: str, data: bytes) -> dict:
    """Damage of every kind the full check is meant to catch (and some that libjpeg repairs silently)."""
    rng = np.random.default_rng(len(data))
    scan, end = scan_start(data), len(data) - 2
    corpus = {f"{name} intact": data, f"{name} no end marker": data[:-2]}
    for share in (0.05, 0.3, 0.5, 0.8, 0.97):
        corpus[f"{name} truncated at {share}"] = data[: int(len(data) * share)]
    corpus[f"{name} truncated in the scan header"] = data[: scan - 3]
    dht = data.find(b"\xff\xc4")
    if dht >= 0:
        corpus[f"{name} damaged Huffman table"] = data[: dht + 5] + b"\xff" * 30 + data[dht + 35 :]
        corpus[f"{name} Huffman counts zeroed"] = data[: dht + 5] + b"\0" * 16 + data[dht + 21 :]
    for seed in range(6):
        at = rng.integers(scan, end - 64, 3)
        chunk = bytearray(data)
        for a in at:
            chunk[a : a + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        corpus[f"{name} entropy data overwritten {seed}"] = bytes(chunk)
        cut = int(rng.integers(scan, end - 64))
        corpus[f"{name} entropy data cut out {seed}"] = data[:cut] + data[cut + 200 :]
    middle = (scan + end) // 2
    corpus[f"{name} bogus marker in the scan"] = data[:middle] + b"\xff\x01" + data[middle:]
    corpus[f"{name} restart marker in the scan"] = data[:middle] + b"\xff\xd3" + data[middle:]
    corpus[f"{name} early end marker"] = data[:middle] + b"\xff\xd9" + data[middle:]
    corpus[f"{name} second image start"] = data[:middle] + b"\xff\xd8" + data[middle:]
    sof = next(data.find(m) for m in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2") if data.find(m) >= 0)
    corpus[f"{name} lossless frame type"] = data[:sof] + b"\xff\xc3" + data[sof + 2 :]
    corpus[f"{name} frame length wrong"] = data[: sof + 2] + b"\x00\x05" + data[sof + 4 :]
    corpus[f"{name} zero width"] = data[: sof + 7] + b"\x00\x00" + data[sof + 9 :]
    dqt = data.find(b"\xff\xdb")
    corpus[f"{name} no quantisation table"] = data[:dqt] + data[dqt + 2 + int.from_bytes(data[dqt + 2 : dqt + 4], "big") :]
    corpus[f"{name} scan header damaged"] = data[: scan - 6] + b"\xff\xff\xff\xff" + data[scan - 2 :]
    return corpus


def corpus() -> dict:
    files = {
        "empty": b"",
        "text": b"not an image at all\n",
        "zeros": bytes(4000),
        "noise": np.random.default_rng(1).bytes(5000),
        "png truncated": png_bytes()[:300],
        "only the start marker": b"\xff\xd8",
        "header only": jpeg()[:200],
    }
    for name, data in variants().items():
        files.update(damaged(name, data))
    return files


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), "teal").save(out, format="PNG")
    return out.getvalue()


def verdict(data: bytes):
    try:
        image = prepare_image(data, "full")
    except BadImage as error:
        return "reject", str(error)
    return "keep", image.width, image.height, image.format, image.data == data


def test_eighth_scale_check_gives_the_full_decodes_verdicts(monkeypatch):
    files = corpus()
    reduced = {name: verdict(data) for name, data in files.items()}
    monkeypatch.setattr(images, "CHECK_REDUCE", 1)
    full = {name: verdict(data) for name, data in files.items()}
    differ = {name: (reduced[name], full[name]) for name in files if reduced[name] != full[name]}
    assert not differ
    rejected = [name for name, v in full.items() if v[0] == "reject"]
    kept = [name for name, v in full.items() if v[0] == "keep"]
    assert len(rejected) >= 60 and len(kept) >= 20  # the corpus holds both verdicts, so the comparison can fail
    assert all(full[f"{name} intact"] == ("keep", 203, 151, "JPEG", True) for name in variants())


@pytest.mark.parametrize("mode", ["baseline", "progressive"])
def test_the_check_still_decodes_every_entropy_byte(mode, monkeypatch):
    """Cutting any 200 bytes out of the scan is caught at 1/8 scale exactly when it is at full size."""
    data = variants()[mode]
    scan = scan_start(data)
    for cut in range(scan, len(data) - 210, 97):
        broken = data[:cut] + data[cut + 200 :]
        reduced = verdict(broken)
        monkeypatch.setattr(images, "CHECK_REDUCE", 1)
        assert verdict(broken) == reduced, cut
        monkeypatch.setattr(images, "CHECK_REDUCE", 8)


def test_a_kept_jpeg_is_checked_at_an_eighth_and_stored_unchanged(monkeypatch):
    decoded = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda image: (real(image), decoded.append(image.size)))
    data = jpeg(size=(800, 600))
    kept = prepare_image(data, "full")
    assert decoded == [(100, 75)] and (kept.width, kept.height) == (800, 600) and kept.data == data
    resized = prepare_image(data, "full", resize=150)
    assert decoded[-1] == (200, 150) and (resized.width, resized.height) == (200, 150)
