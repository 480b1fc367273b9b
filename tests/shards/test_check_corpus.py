"""The build's full check decodes a JPEG kept as it is at 1/8 scale (wv.shards.images.CHECK_REDUCE),
with simplejpeg first and PIL for what it refuses: over a corpus of damaged files it must give exactly
the verdicts, reasons included, of a full-size PIL decode."""

import io

import numpy as np
import pytest
import simplejpeg
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
        "exif icc comment": jpeg(exif=exif_bytes(), icc_profile=b"\0" * 128 + b"acsp" + b"\0" * 400, comment=b"a comment"),
    }


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "a camera maker", 6
    return exif.tobytes()


def short_jfif() -> bytes:
    """A JPEG whose JFIF segment is too short for PIL's header parser; libjpeg skips it."""
    data = jpeg()
    app0 = data.index(b"\xff\xe0")
    return data[:app0] + b"\xff\xe0\x00\x07JFIF\x00" + data[app0 + 2 + int.from_bytes(data[app0 + 2 : app0 + 4], "big") :]


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
        "short JFIF segment": short_jfif(),
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


def verdicts(files: dict, monkeypatch, reduce: int = 8, fast_path: bool = True) -> dict:
    """name -> verdict, with the check at 1/reduce scale; without the fast path, PIL alone decides."""
    monkeypatch.setattr(images, "CHECK_REDUCE", reduce)
    if not fast_path:
        monkeypatch.setattr(images, "decodes_cleanly", lambda data, size: False)
    try:
        return {name: verdict(data) for name, data in files.items()}
    finally:
        monkeypatch.undo()


def fast_path_answers(files: dict, monkeypatch) -> dict:
    """name -> what the simplejpeg fast path answered (absent: the check never asked it)."""
    answers, real = {}, images.decodes_cleanly
    for name, data in files.items():
        monkeypatch.setattr(images, "decodes_cleanly", lambda d, size, name=name: answers.setdefault(name, real(d, size)))
        verdict(data)
    monkeypatch.undo()
    return answers


def test_eighth_scale_check_gives_the_full_decodes_verdicts(monkeypatch):
    files = corpus()
    built = verdicts(files, monkeypatch)
    pil_eighth = verdicts(files, monkeypatch, fast_path=False)
    full = verdicts(files, monkeypatch, reduce=1, fast_path=False)
    assert {name for name in files if built[name] != full[name]} == set()
    assert {name for name in files if pil_eighth[name] != full[name]} == set()
    rejected = [name for name, v in full.items() if v[0] == "reject"]
    kept = [name for name, v in full.items() if v[0] == "keep"]
    assert len(rejected) >= 60 and len(kept) >= 20  # the corpus holds both verdicts, so the comparison can fail
    assert all(full[f"{name} intact"] == ("keep", 203, 151, "JPEG", True) for name in variants())


def test_the_fast_path_accepts_nothing_a_full_size_decode_rejects(monkeypatch):
    files = corpus()
    answers = fast_path_answers(files, monkeypatch)
    full = verdicts(files, monkeypatch, reduce=1, fast_path=False)
    assert [name for name, clean in answers.items() if clean and full[name][0] != "keep"] == []
    assert all(answers[f"{name} intact"] for name in variants())
    assert list(answers.values()).count(False) >= 60  # most damaged files go on to PIL, which gives the reason


def test_pil_parses_the_header_before_the_fast_path_decodes():
    """simplejpeg decodes a file PIL's header parser refuses: Image.open runs first, so PIL's verdict stands."""
    data = short_jfif()
    assert images.decodes_cleanly(data, (203, 151))
    assert verdict(data) == ("reject", "not an image")


@pytest.mark.parametrize("mode", ["baseline", "progressive"])
def test_the_check_still_decodes_every_entropy_byte(mode, monkeypatch):
    """Cutting any 200 bytes out of the scan is caught at 1/8 scale exactly when it is at full size."""
    data = variants()[mode]
    scan = scan_start(data)
    broken = {cut: data[:cut] + data[cut + 200 :] for cut in range(scan, len(data) - 210, 97)}
    assert verdicts(broken, monkeypatch) == verdicts(broken, monkeypatch, reduce=1, fast_path=False)


def test_a_kept_jpeg_is_checked_at_an_eighth_and_stored_unchanged(monkeypatch):
    decoded = []
    real_fast, real_pil = simplejpeg.decode_jpeg, images.decode

    def fast(*args, **kwargs):
        pixels = real_fast(*args, **kwargs)
        decoded.append(pixels.shape[1::-1])  # (width, height), as PIL's size
        return pixels

    monkeypatch.setattr(simplejpeg, "decode_jpeg", fast)
    monkeypatch.setattr(images, "decode", lambda image: (real_pil(image), decoded.append(image.size)))
    data = jpeg(size=(800, 600))
    kept = prepare_image(data, "full")
    assert decoded == [(100, 75)] and (kept.width, kept.height) == (800, 600) and kept.data == data
    resized = prepare_image(data, "full", resize=150)
    assert decoded[-1] == (200, 150) and (resized.width, resized.height) == (200, 150)
