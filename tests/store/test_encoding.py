"""Chunk codecs: every float64 array decodes to the same bits, whatever its shape."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diag.store import encoding, rollups


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


finite = st.floats(allow_nan=False, allow_infinity=False)
arrays = hnp.arrays(np.float64, st.integers(0, 300), elements=finite)


@settings(max_examples=300, deadline=None)
@given(arrays)
def test_random_floats_round_trip(a: np.ndarray) -> None:
    assert _same_bits(encoding.decode_floats(encoding.encode_floats(a)), a)
    assert _same_bits(encoding.decode_ts(encoding.encode_ts(a)), a)


@settings(max_examples=100, deadline=None)
@given(finite, st.integers(1, 500))
def test_constant_round_trip(v: float, n: int) -> None:
    a = np.full(n, v)
    blob = encoding.encode_floats(a)
    assert _same_bits(encoding.decode_floats(blob), a)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 300), elements=st.integers(-(2**53), 2**53)))
def test_integer_valued_round_trip(ints: np.ndarray) -> None:
    a = ints.astype(np.float64)
    assert _same_bits(encoding.decode_floats(encoding.encode_floats(a)), a)
    assert _same_bits(encoding.decode_ts(encoding.encode_ts(a)), a)


extremes = st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
     2.0**53, 2.0**53 + 2, -(2.0**63), 1e-300, 0.1, 1 / 3]
)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 100), elements=st.one_of(extremes, finite)))
def test_extreme_floats_round_trip(a: np.ndarray) -> None:
    assert _same_bits(encoding.decode_floats(encoding.encode_floats(a)), a)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1e9, 2e9, allow_nan=False),
    hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(-86400, 86400, allow_nan=False)),
    st.sampled_from([0, 1, 2, 3, 6]),
)
def test_out_of_order_timestamps_round_trip(base: float, offsets: np.ndarray, digits: int) -> None:
    # Shuffled, repeated and decimal-rounded timestamps, as one batch may carry them.
    ts = np.round(base + offsets, digits)
    assert _same_bits(encoding.decode_ts(encoding.encode_ts(ts)), ts)


def test_decimal_values_are_compact() -> None:
    rng = np.random.default_rng(7)
    walk = np.round(100 + np.cumsum(rng.normal(0, 1, 720)), 2)
    ts = 1_700_000_000 + 10.0 * np.arange(720)
    size = len(encoding.encode_floats(walk)) + len(encoding.encode_ts(ts))
    assert size / 720 < 1.6  # ~1.3 measured; the XOR codec alone needs ~7


def test_nan_and_inf_round_trip() -> None:
    a = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0])
    assert _same_bits(encoding.decode_floats(encoding.encode_floats(a)), a)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 50), elements=finite), st.booleans())
def test_rollup_block_round_trip(a: np.ndarray, compact: bool) -> None:
    bucket = 60.0 * np.arange(a.size)
    cols = {f: a for f in rollups.FIELDS}
    back = rollups.unpack_block(rollups.pack_block(bucket, cols, compact))
    assert _same_bits(np.asarray(back["bucket"]), bucket)
    for f in rollups.FIELDS:
        assert _same_bits(np.asarray(back[f]), a)
