"""The disk buffer: order kept across reopen, bounded, oldest dropped first and counted."""

from diag.agent.buffer import Buffer


def test_order_survives_reopen_and_ack_removes(tmp_path):
    b = Buffer(tmp_path / "b.db", 10)
    for i in range(3):
        b.append({"i": i})
    b.close()
    b = Buffer(tmp_path / "b.db", 10)
    seq, body = b.oldest()
    assert body == {"i": 0}
    b.ack(seq)
    assert [b.oldest()[1]["i"], len(b)] == [1, 2]


def test_full_buffer_drops_the_oldest_and_counts(tmp_path):
    b = Buffer(tmp_path / "b.db", 3)
    dropped = [b.append({"i": i}) for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert len(b) == 3 and b.oldest()[1] == {"i": 2}
    assert b.dropped() == 2
    b.reported(2)
    assert b.dropped() == 0
