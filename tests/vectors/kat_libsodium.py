#!/usr/bin/env python3
"""Recomputes the sealed-cookie known-answer vector with libsodium (PyNaCl), independently of
sealgate's Rust code. `pip install pynacl && python3 tests/vectors/kat_libsodium.py` must print
the KAT constant in src/seal/tests.rs."""
import base64
import hashlib

import nacl.bindings as sodium

key = bytes([0x42]) * 32
key_id = hashlib.sha256(b"sealgate key id v1" + key).digest()[0]
header = bytes([1, key_id, 1])  # version, key id, chunk count
nonce = bytes([0x24]) * 24


def zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = b""
    while z >= 0x80:
        out += bytes([z & 0x7F | 0x80])
        z >>= 7
    return out + bytes([z])


plaintext = zigzag_varint(2_000_000_000) + b"known answer"
aad = b"sealgate\0" + header + b"session\0" + b"__Host-kat"
ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
print(base64.urlsafe_b64encode(header + nonce + ct).rstrip(b"=").decode())
