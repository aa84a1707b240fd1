"""The multihash functions stacpull knows, by multicodec code and by name.

A table with no imports: the config checks ``download.record_hash`` against it without
loading hashlib and zipfile (:mod:`stacpull.verify` computes the digests and re-exports
these names).
"""

from __future__ import annotations

__all__ = ["DEFAULT_RECORD_HASH", "MULTIHASH_CODES", "MULTIHASH_NAMES"]

#: multicodec code → (name, constructor name, digest length); the constructor is hashlib's,
#: except ``blake3`` (the package of that name)
MULTIHASH_CODES: dict[int, tuple[str, str, int]] = {
    0x11: ("sha1", "sha1", 20),
    0x12: ("sha2-256", "sha256", 32),
    0x13: ("sha2-512", "sha512", 64),
    0x14: ("sha3-512", "sha3_512", 64),
    0x16: ("sha3-256", "sha3_256", 32),
    0x1E: ("blake3", "blake3", 32),
    0xD5: ("md5", "md5", 16),
    0xB240: ("blake2b-512", "blake2b", 64),
}
#: The multihash names stacpull can compute, for messages and for ``download.record_hash``.
MULTIHASH_NAMES = tuple(sorted(name for name, _, _ in MULTIHASH_CODES.values()))
#: What ``download.record_hash`` defaults to.
DEFAULT_RECORD_HASH = "blake3"
