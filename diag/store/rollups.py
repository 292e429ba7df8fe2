"""Bucket aggregates: raw points -> partials, partials + partials -> partials.

A partial is (sid, bucket, sum, count, min, max, last, last_ts) per series and
bucket. Every aggregate the API offers is decomposable this way (avg = sum/count,
last = value at the greatest last_ts), so roll-ups are maintained incrementally:
each compaction merges the partials of the points it moves into the stored blocks,
and a query combines stored partials with partials computed from the head.
"""

from __future__ import annotations

import struct

import numpy as np

from . import encoding

FIELDS = ("sum", "count", "min", "max", "last", "last_ts")
Partials = dict[str, np.ndarray]  # FIELDS plus "sid" (int64) and "bucket" (float64)


def empty() -> Partials:
    p = {f: np.empty(0) for f in FIELDS}
    p["sid"] = np.empty(0, np.int64)
    p["bucket"] = np.empty(0)
    return p


def bucket_of(ts: np.ndarray, res: float) -> np.ndarray:
    return np.floor(ts / res) * res


def _groups(sid: np.ndarray, bucket: np.ndarray, order_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by (sid, bucket, order_key); return the order and the group start indexes."""
    order = np.lexsort((order_key, bucket, sid))
    s, b = sid[order], bucket[order]
    change = np.empty(s.size, dtype=bool)
    if s.size:
        change[0] = True
        np.not_equal(s[1:], s[:-1], out=change[1:])
        change[1:] |= b[1:] != b[:-1]
    return order, np.flatnonzero(change)


def from_points(
    sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, res: float, need: tuple[str, ...] = FIELDS
) -> Partials:
    """Aggregate raw points into `res`-second buckets (only the fields in `need`)."""
    if sid.size == 0:
        return empty()
    bucket = bucket_of(ts, res)
    order, starts = _groups(sid, bucket, ts)
    v = vals[order]
    ends = np.append(starts[1:], v.size)
    out: Partials = {"sid": sid[order][starts], "bucket": bucket[order][starts]}
    if "sum" in need:
        out["sum"] = np.add.reduceat(v, starts)
    if "count" in need:
        out["count"] = (ends - starts).astype(np.float64)
    if "min" in need:
        out["min"] = np.minimum.reduceat(v, starts)
    if "max" in need:
        out["max"] = np.maximum.reduceat(v, starts)
    if "last" in need or "last_ts" in need:
        out["last"] = v[ends - 1]
        out["last_ts"] = ts[order][ends - 1]
    return out


def concat(parts: list[Partials], need: tuple[str, ...] = FIELDS) -> Partials:
    parts = [p for p in parts if p["sid"].size]
    if not parts:
        return empty()
    keys = ("sid", "bucket") + tuple(f for f in FIELDS if f in need or (f == "last_ts" and "last" in need))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def combine(p: Partials, res: float | None = None, need: tuple[str, ...] = FIELDS) -> Partials:
    """Merge partials of the same (sid, bucket), first re-bucketing to `res` if given."""
    if p["sid"].size == 0:
        return p
    bucket = bucket_of(p["bucket"], res) if res is not None else p["bucket"]
    key = p["last_ts"] if "last_ts" in p else np.zeros(bucket.size)
    order, starts = _groups(p["sid"], bucket, key)
    out: Partials = {"sid": p["sid"][order][starts], "bucket": bucket[order][starts]}
    ends = np.append(starts[1:], order.size)
    for f, op in (("sum", np.add), ("count", np.add), ("min", np.minimum), ("max", np.maximum)):
        if f in need and f in p:
            out[f] = op.reduceat(p[f][order], starts)
    if ("last" in need or "last_ts" in need) and "last" in p:
        out["last"] = p["last"][order][ends - 1]
        out["last_ts"] = p["last_ts"][order][ends - 1]
    return out


def round_sums(p: Partials, digits: int | None) -> Partials:
    """Snap sums of k-decimal values to the nearest float of their exact decimal sum.

    Sound only when every summand is an exact k-decimal (the caller checks): the true
    sum is then a k-decimal too, and this undoes float summation noise, which would
    otherwise cost the decimal codec ~5 bytes per stored bucket.
    """
    if digits is None or "sum" not in p or p["sum"].size == 0:
        return p
    scale = 10.0**digits
    scaled = p["sum"] * scale
    if not np.isfinite(scaled).all() or np.abs(scaled).max() >= 2.0**52:
        return p
    p["sum"] = np.round(scaled) / scale
    return p


def value_of(p: Partials, agg: str) -> np.ndarray:
    if agg == "avg":
        return p["sum"] / p["count"]
    return p[agg]


def needs(agg: str) -> tuple[str, ...]:
    return {"avg": ("sum", "count"), "last": ("last", "last_ts")}.get(agg, (agg,))


# A block blob holds the bucket starts and the six fields of one series in one block.
# Fine levels (1 min, 5 min: most of the roll-up bytes) encode each column on its own,
# so the decimal codec takes min/max/last/count and regular bucket times nearly free;
# coarse levels (1 h, 1 d: 1/360 of the raw points or less) store plain columns in one
# zstd frame, because a 31-day query reads hundreds of them and decoding must be cheap.
_SIZE = struct.Struct("<I")
COLUMNAR, PLAIN = b"C", b"P"
_COLS = ("bucket",) + FIELDS


def pack_block(bucket: np.ndarray, cols: dict[str, np.ndarray], compact: bool) -> bytes:
    arrays = [bucket] + [cols[f] for f in FIELDS]
    if not compact:
        raw = b"".join(np.ascontiguousarray(a, np.float64).tobytes() for a in arrays)
        return PLAIN + _SIZE.pack(bucket.size) + encoding.compress(raw)
    out = bytearray(COLUMNAR)
    for name, a in zip(_COLS, arrays):
        b = encoding.encode_ts(a) if name in ("bucket", "last_ts") else encoding.encode_floats(a)
        out += _SIZE.pack(len(b)) + b
    return bytes(out)


def unpack_block(blob: bytes, need: tuple[str, ...] = FIELDS) -> dict[str, np.ndarray]:
    """The "bucket" column plus the fields in `need` (others are not decoded)."""
    want = {"bucket", *need}
    if "last" in want:
        want.add("last_ts")
    if blob[:1] == PLAIN:
        (n,) = _SIZE.unpack_from(blob, 1)
        raw = encoding.decompress(blob[1 + _SIZE.size :])
        return {
            name: np.frombuffer(raw, np.float64, count=n, offset=8 * n * i)
            for i, name in enumerate(_COLS)
            if name in want
        }
    out: dict[str, np.ndarray] = {}
    pos = 1
    for name in _COLS:
        (size,) = _SIZE.unpack_from(blob, pos)
        pos += _SIZE.size
        if name in want:
            out[name] = encoding.decode_floats(blob[pos : pos + size])
        pos += size
    return out
