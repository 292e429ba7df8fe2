"""Health states by PRODUCT.md's precedence: NotApplicable, Maintaining, Initializing,
Impaired, InsufficientData, Warning, Ok."""

from diag.health import compute

NOW, INTERVAL = 10_000.0, 10.0


def check(cid: str, status: str) -> dict:
    return {"id": cid, "status": status, "message": f"{cid} is {status}"}


HEALTHY = [check("performance.cpu", "ok"), check("performance.memory", "ok"), check("storage.disk_usage", "ok")]


def state(checks=HEALTHY, last_sample=NOW - 5, maintenance=None, monitoring=True):
    return compute(monitoring=monitoring, maintenance=maintenance, checks=checks, last_sample=last_sample,
                   now=NOW, interval=INTERVAL)


def test_ok_when_every_check_passes():
    assert state() == ("Ok", [])


def test_warning_names_the_checks():
    s, reasons = state(HEALTHY + [check("network.kernel_drops", "warning")])
    assert s == "Warning" and [r["check_id"] for r in reasons] == ["network.kernel_drops"]


def test_critical_beats_warning():
    s, reasons = state(HEALTHY + [check("network.kernel_drops", "warning"), check("storage.disk_usage", "critical")])
    assert s == "Impaired" and [r["check_id"] for r in reasons] == ["storage.disk_usage"]


def test_initializing_until_the_first_full_diagnosis():
    assert state(checks=None)[0] == "Initializing"


def test_maintenance_beats_everything_but_not_applicable():
    m = {"event_id": "e-1", "type": "SystemMaintenance.Reboot", "finish_time": NOW + 600}
    assert state(HEALTHY + [check("storage.disk_usage", "critical")], maintenance=m)[0] == "Maintaining"
    assert state(maintenance=m, monitoring=False)[0] == "NotApplicable"


def test_silence_for_three_intervals_is_insufficient_data_then_stopped_after_five_minutes():
    assert state(last_sample=NOW - 2 * INTERVAL)[0] == "Ok"
    assert state(last_sample=NOW - 3 * INTERVAL)[0] == "InsufficientData"
    s, reasons = state(last_sample=NOW - 300)
    assert s == "Impaired" and reasons[0]["check_id"] == "state.stopped"


def test_missing_core_metrics_is_insufficient_data():
    s, reasons = state([check("performance.cpu", "unknown"), check("performance.memory", "ok")])
    assert s == "InsufficientData" and reasons[0]["check_id"] == "performance.cpu"


def test_a_critical_check_is_impaired_even_while_data_is_late():
    assert state(HEALTHY + [check("storage.readonly", "critical")], last_sample=NOW - 40)[0] == "Impaired"


def test_an_earlier_silence_found_by_state_stopped_is_a_warning():
    gap = check("state.stopped", "warning")
    s, reasons = state(HEALTHY + [gap])
    assert s == "Warning" and [r["check_id"] for r in reasons] == ["state.stopped"]
    assert reasons[0]["message"] == gap["message"]


def test_state_stopped_critical_in_the_report_follows_freshness():
    was_silent = check("state.stopped", "critical")
    # Reporting again: the silence is history, a warning, not Impaired.
    s, reasons = state(HEALTHY + [was_silent])
    assert s == "Warning" and reasons[0]["check_id"] == "state.stopped" and reasons[0]["status"] == "warning"
    # Still silent: critical, from the data's age.
    s, reasons = state(HEALTHY + [was_silent], last_sample=NOW - 400)
    assert s == "Impaired" and reasons[0]["check_id"] == "state.stopped" and reasons[0]["status"] == "critical"


def test_state_stopped_ok_or_unknown_changes_nothing():
    assert state(HEALTHY + [check("state.stopped", "ok")]) == ("Ok", [])
    assert state(HEALTHY + [check("state.stopped", "unknown")]) == ("Ok", [])


def _agent_with_little_data(n_unknown: int = 23, n_na: int = 4) -> list[dict]:
    """Like an agent that pushes CPU and memory only: those are judged, most others not."""
    return (HEALTHY + [check(f"network.c{i}", "unknown") for i in range(n_unknown)]
            + [check(f"network.na{i}", "not_applicable") for i in range(n_na)])


def test_mostly_unknown_is_insufficient_data_with_each_unjudged_check():
    s, reasons = state(_agent_with_little_data())
    assert s == "InsufficientData"
    assert reasons[0] == {"check_id": None, "status": "unknown", "message": "23 of 26 applicable checks cannot be judged"}
    assert [r["check_id"] for r in reasons[1:]] == [f"network.c{i}" for i in range(23)]
    assert reasons[1]["message"] == "network.c0 is unknown"


def test_a_few_unknown_checks_beside_judged_ones_leave_it_ok():
    # Half of the applicable checks judged is enough: not "most" unknown.
    assert state(_agent_with_little_data(n_unknown=3)) == ("Ok", [])
    assert state(HEALTHY + [check("network.c0", "unknown"), check("network.c1", "unknown"),
                            check("network.c2", "unknown")]) == ("Ok", [])
    # Not-applicable checks are not unknown ones.
    assert state(HEALTHY + [check(f"access.n{i}", "not_applicable") for i in range(20)]) == ("Ok", [])


def test_a_critical_check_is_impaired_even_when_most_are_unknown():
    s, reasons = state(_agent_with_little_data() + [check("storage.readonly", "critical")])
    assert s == "Impaired" and [r["check_id"] for r in reasons] == ["storage.readonly"]


def test_a_warning_among_mostly_unknown_checks_is_still_a_reason():
    s, reasons = state(_agent_with_little_data() + [check("network.kernel_drops", "warning")])
    assert s == "InsufficientData" and reasons[-1]["check_id"] == "network.kernel_drops"
    assert reasons[-1]["status"] == "warning"
