"""The head's per-instance index: reading one instance's records gives exactly what a scan
of the whole head gives, while appending, across growth of its arrays, and after records
are dropped by compaction."""

from __future__ import annotations

import numpy as np

from diag.store.head import Head

OWNERS = {"a": [1, 2, 3], "b": [4, 5], "c": [6]}  # instance -> its series ids


def fill(head: Head, batches: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for seq in range(batches):
        owner = ("a", "b", "c")[seq % 3]
        ids = np.array(OWNERS[owner], np.int32)
        ts = np.full(ids.size, 1000.0 + seq * 10) + rng.random(ids.size)
        head.append(seq, ids, ts, rng.random(ids.size), owner)


def as_set(got: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, float, float]]:
    return set(zip(got[0].tolist(), got[1].tolist(), got[2].tolist()))


def agree(head: Head) -> None:
    view = head.view()
    for owner, sids in OWNERS.items():
        for sel in (np.array(sids), np.array(sids[:1])):
            for start, end in ((0.0, 1e9), (1100.0, 1500.0), (5000.0, 6000.0), (1e8, 1e9)):
                indexed = view.select(sel, start, end, owner)
                scanned = view.select(sel, start, end)
                assert as_set(indexed) == as_set(scanned), (owner, sel, start, end)
    assert view.select(np.array([1]), 0.0, 1e9, "nobody")[0].size == 0


def test_an_owners_records_give_what_a_scan_gives():
    head = Head()
    fill(head, 1000)  # past the first capacities of the head and of every owner's index
    agree(head)
    assert head.view().select(np.array([1, 2, 3]), 0.0, 1e9, "a")[0].size == 334 * 3


def test_and_after_compaction_dropped_records():
    head = Head()
    fill(head, 600)
    seqs, _, _, _ = head.take(1000.0 + 300 * 10)  # the older half
    head.drop(seqs, gen=1)
    agree(head)
    assert head.view().gen == 1 and head.view().select(np.array([6]), 0.0, 1e9, "c")[0].size == 100


def test_a_reader_of_an_older_view_sees_only_its_records():
    head = Head()
    fill(head, 30)
    old = head.view()
    before = as_set(old.select(np.array([1, 2, 3]), 0.0, 1e9, "a"))
    fill(head, 30, seed=2)  # seqs again, later points appended by the writer
    assert as_set(old.select(np.array([1, 2, 3]), 0.0, 1e9, "a")) == before
