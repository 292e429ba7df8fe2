"""One freshness rule: a reading is stale after three missed collections, never sooner
than the floor its reader needs."""

from diag.settings.stale import HEALTHZ_FLOOR, NOW_STRIP_FLOOR, SERIES_FLOOR, stale_after


def test_three_missed_intervals_make_a_reading_stale():
    assert stale_after(10) == 30.0
    assert stale_after(600) == 1800.0


def test_the_floor_wins_for_short_intervals_only():
    assert stale_after(10, SERIES_FLOOR) == 300.0
    assert stale_after(200, SERIES_FLOOR) == 600.0
    assert stale_after(5, HEALTHZ_FLOOR) == 30.0 and stale_after(15, HEALTHZ_FLOOR) == 45.0
    assert stale_after(10, NOW_STRIP_FLOOR) == 60.0


def test_the_readers_keep_their_former_thresholds():
    # checks/storage.py, dashboards/data.py and checks/state.py: max(300, 3i); /healthz:
    # max(3i, 30); the Now strip: max(60, 3i); health's InsufficientData: 3i.
    for interval in (1, 10, 60, 150, 3600):
        assert stale_after(interval, SERIES_FLOOR) == max(300, 3 * interval)
        assert stale_after(interval, HEALTHZ_FLOOR) == max(3 * interval, 30)
        assert stale_after(interval, NOW_STRIP_FLOOR) == max(60, 3 * interval)
        assert stale_after(interval) == 3 * interval
