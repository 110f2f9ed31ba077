"""Sequence arithmetic modulo 2**32 (RFC 1982 serial number arithmetic)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pcapcheck import seq as sq

seqs = st.integers(0, sq.MASK)
steps = st.integers(-(2**31) + 1, 2**31 - 1)


@given(seqs, steps)
def test_diff_inverts_add(a: int, n: int) -> None:
    assert sq.diff(sq.add(a, n), a) == n


@given(seqs, st.integers(1, 2**31 - 1))
def test_order_across_wrap(a: int, n: int) -> None:
    b = sq.add(a, n)
    assert sq.lt(a, b) and sq.le(a, b) and sq.gt(b, a) and sq.ge(b, a)
    assert not sq.lt(b, a) and not sq.gt(a, b)
    assert sq.max_seq(a, b) == b and sq.min_seq(a, b) == a


@given(seqs)
def test_reflexive(a: int) -> None:
    assert sq.le(a, a) and sq.ge(a, a) and not sq.lt(a, a) and not sq.gt(a, a) and sq.diff(a, a) == 0


@given(seqs, seqs)
def test_exactly_one_relation(a: int, b: int) -> None:
    assert [sq.lt(a, b), a == b, sq.gt(a, b)].count(True) == 1


@given(seqs, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_in_range(lo: int, k: int, width: int) -> None:
    assert sq.in_range(sq.add(lo, k), lo, sq.add(lo, width)) == (k < width)


def test_wrap_examples() -> None:
    assert sq.lt(0xFFFFFFFF, 0) and sq.diff(0, 0xFFFFFFFF) == 1 and sq.add(0xFFFFFFFF, 2) == 1
