import pytest

from diag.units import parse_bitrate, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("5m", 300), ("12h", 43200), ("7d", 604800),
                                           ("250ms", 0.25), ("1.5h", 5400), (30, 30), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, size", [("512MiB", 512 * 2**20), ("2GB", 2_000_000_000), ("1k", 1000), (4096, 4096)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, bits", [("100Mbit", 100e6), ("1Gbps", 1e9), ("5000000", 5e6), ("20mbit/s", 20e6)])
def test_bitrates(text, bits):
    assert parse_bitrate(text) == bits


@pytest.mark.parametrize("bad", ["ten seconds", "5x", "", "-5s"])
def test_bad_duration_names_the_forms(bad):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)
