"""TCP sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4, RFC 1982).

Every comparison of sequence or acknowledgment numbers in pcapcheck goes through
these functions: a bare ``<`` on sequence numbers is wrong once a stream wraps.
"""

from typing import Final

MOD: Final = 1 << 32
MASK: Final = MOD - 1
HALF: Final = 1 << 31


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & MASK


def diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in the range [-2**31, 2**31)."""
    return ((a - b + HALF) & MASK) - HALF


def lt(a: int, b: int) -> bool:
    """``a`` is before ``b`` (the kernel's ``before()``)."""
    return ((a - b + HALF) & MASK) < HALF


def le(a: int, b: int) -> bool:
    return ((b - a + HALF) & MASK) >= HALF


def gt(a: int, b: int) -> bool:
    """``a`` is after ``b`` (the kernel's ``after()``)."""
    return ((b - a + HALF) & MASK) < HALF


def ge(a: int, b: int) -> bool:
    return ((a - b + HALF) & MASK) >= HALF


def max_seq(a: int, b: int) -> int:
    return a if ge(a, b) else b


def min_seq(a: int, b: int) -> int:
    return a if le(a, b) else b


def in_range(x: int, lo: int, hi: int) -> bool:
    """``lo <= x < hi`` on the sequence circle."""
    return ((x - lo) & MASK) < ((hi - lo) & MASK)
