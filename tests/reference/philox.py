"""Philox4x32-10 in plain NumPy (Salmon et al., SC'11), checked against the Random123 vectors.

An independent implementation of the generator the kernels use, so the references can draw the
same numbers as dspark without calling it.
"""

from __future__ import annotations

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """One Philox4x32-10 block: four 32-bit words for a 128-bit counter and 64-bit key."""
    c0, c1, c2, c3 = (int(x) & MASK for x in ctr)
    k0, k1 = (int(x) & MASK for x in key)
    for _ in range(10):
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK)
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return c0, c1, c2, c3


def philox_words(c0: np.ndarray, c1: int, c2: int, c3: int, k0: int, k1: int) -> np.ndarray:
    """Vectorised over the first counter word: returns an array of shape (len(c0), 4)."""
    c0 = np.asarray(c0, dtype=np.uint64) & MASK
    c1 = np.full_like(c0, c1 & MASK)
    c2 = np.full_like(c0, c2 & MASK)
    c3 = np.full_like(c0, c3 & MASK)
    k0, k1 = np.uint64(k0 & MASK), np.uint64(k1 & MASK)
    m = np.uint64(MASK)
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & m,
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & m,
        )
        k0, k1 = (k0 + np.uint64(W0)) & m, (k1 + np.uint64(W1)) & m
    return np.stack([c0, c1, c2, c3], axis=1)
