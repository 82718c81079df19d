#!/usr/bin/env python3
"""Recomputes the sealed-cookie known-answer vector with libsodium (PyNaCl), independently of
sealgate's Rust code. `pip install pynacl && python3 tests/vectors/kat_libsodium.py` must print
the KAT constants in src/seal/tests.rs: KAT_V1 (format version 1, still opened) and KAT
(the current version, 2). The envelope is the same; the version byte is in the header and in
the associated data."""
import base64
import hashlib

import nacl.bindings as sodium

key = bytes([0x42]) * 32
key_id = hashlib.sha256(b"sealgate key id v1" + key).digest()[0]
nonce = bytes([0x24]) * 24


def zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = b""
    while z >= 0x80:
        out += bytes([z & 0x7F | 0x80])
        z >>= 7
    return out + bytes([z])


plaintext = zigzag_varint(2_000_000_000) + b"known answer"
for name, version in (("KAT_V1", 1), ("KAT", 2)):
    header = bytes([version, key_id, 1])  # version, key id, chunk count
    aad = b"sealgate\0" + header + b"session\0" + b"__Host-kat"
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
    print(name, base64.urlsafe_b64encode(header + nonce + ct).rstrip(b"=").decode())
