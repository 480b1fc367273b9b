"""An append-only tar writer for shards: POSIX ustar members, byte offsets, sha256 on the fly.

Why not tarfile / webdataset's TarWriter: they build each 512-byte member header field by field in
Python, which cost more than everything else in a cheap-check shard build together (profiled: ~70%
of the time per sample; see bench/shard_build.py). Here a header is a template with name, size and
checksum patched in. Names longer than ustar's 100 bytes fall back to tarfile's own PAX headers.
The output is a plain tar: tarfile, GNU tar and webdataset read it.
"""

import hashlib
import tarfile

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240, what tar pads an archive to


def header_template(mtime: int, mode: int, owner: str) -> bytes:
    info = tarfile.TarInfo("")
    info.mtime, info.mode, info.uname, info.gname = mtime, mode, owner, owner
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    header[148:156] = b" " * 8  # checksum is computed with its own field as spaces
    return bytes(header)


class TarShardWriter:
    """Write samples (KEY.ext members) to a binary file; `offset` is the byte position of the next sample."""

    def __init__(self, file, mtime: int, mode: int = 0o444, owner: str = "bigdata"):
        self.file = file
        self.template = header_template(mtime, mode, owner)
        self.template_sum = sum(self.template) - sum(self.template[124:136])  # its name field is all NUL
        self.mtime, self.mode, self.owner = mtime, mode, owner
        self.offset = 0
        self.sha256 = hashlib.sha256()

    def header(self, name: str, size: int) -> bytes:
        encoded = name.encode()
        if len(encoded) > 100:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = size, self.mtime, self.mode, self.owner, self.owner
            return info.tobuf(tarfile.PAX_FORMAT)
        header = bytearray(self.template)
        size_field = b"%011o\0" % size
        header[0 : len(encoded)] = encoded
        header[124:136] = size_field
        # the checksum is the sum of the header's bytes: the template's, less its size field, plus what is patched in
        header[148:155] = b"%06o\0" % (self.template_sum + sum(encoded) + sum(size_field))
        return bytes(header)

    def write_sample(self, key: str, members: dict) -> tuple[int, int]:
        """Write KEY.ext for each (ext, bytes) in order; returns the sample's (offset, length)."""
        pieces = []
        for ext, data in members.items():
            pieces.append(self.header(f"{key}.{ext}", len(data)))
            pieces.append(data)
            pieces.append(b"\0" * (-len(data) % BLOCK))
        return self._write(b"".join(pieces))

    def close(self) -> None:
        end = self.offset + 2 * BLOCK
        self._write(b"\0" * (2 * BLOCK + (-end % RECORD)))

    def _write(self, chunk: bytes) -> tuple[int, int]:
        start = self.offset
        self.file.write(chunk)
        self.sha256.update(chunk)
        self.offset += len(chunk)
        return start, len(chunk)
