"""The Prometheus exposition writer of ``heal serve``: escaping, number formats, one HELP/TYPE
per family, cumulative histogram buckets, breaker and storage figures."""

from __future__ import annotations

from pipeline.runtime.metrics import LATENCY_BUCKETS, MetricsRegistry
from pipeline.serve import prometheus


def test_label_values_are_escaped_and_numbers_formatted() -> None:
    out = prometheus.Exposition()
    out.add("heal_x", "gauge", "x", 3.0, {"stream": 'a"b\\c\nd'})
    out.add("heal_x", "gauge", "x", 0.25, {"stream": "plain"})
    out.add("heal_y", "gauge", "y", float("inf"))
    text = out.render()
    assert text.splitlines() == [
        "# HELP heal_x x", "# TYPE heal_x gauge",
        'heal_x{stream="a\\"b\\\\c\\nd"} 3', 'heal_x{stream="plain"} 0.25',
        "# HELP heal_y y", "# TYPE heal_y gauge", "heal_y +Inf"]


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    registry = MetricsRegistry()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 100.0):
        registry.observe_handle("lookup", seconds)
    out = prometheus.Exposition()
    prometheus.add_runtime(out, registry.snapshot(), LATENCY_BUCKETS)
    lines = out.render().splitlines()
    buckets = [line for line in lines if line.startswith("heal_handler_latency_seconds_bucket")]
    values = [float(line.rsplit(" ", 1)[1]) for line in buckets]
    assert values == sorted(values) and values[-1] == 5
    assert buckets[0] == 'heal_handler_latency_seconds_bucket{stage="lookup",le="0.001"} 1'
    assert buckets[-1] == 'heal_handler_latency_seconds_bucket{stage="lookup",le="+Inf"} 5'
    assert 'heal_handler_latency_seconds_count{stage="lookup"} 5' in lines
    assert lines.count("# TYPE heal_handler_latency_seconds histogram") == 1
    assert 'heal_stage_handled_total{stage="lookup"} 5' in lines


def test_breaker_open_only_for_refusing_states() -> None:
    for state, expected in (("CLOSED", "0"), ("HALF_OPEN", "0"), ("OPEN", "1"),
                            ("FORCED_OPEN", "1"), ("unknown", "0")):
        out = prometheus.Exposition()
        prometheus.add_breaker(out, {"state": state})
        assert f"heal_breaker_open {expected}" in out.render().splitlines(), state


def test_streams_and_storage_figures() -> None:
    out = prometheus.Exposition()
    prometheus.add_streams(out, {
        "heal:errors": {"length": 9, "groups": {"fingerprint": {
            "lag": 4, "pending": 2, "consumers": 1}}},
        "heal:dead": {"length": 3, "groups": {}, "last_added_ms": 1700000000250}},
        "heal:dead")
    prometheus.add_storage(out, {"applied": 5, "rolled_back": 2, "suggested": 1},
                           {"fixes": {"ACTIVE": 30, "QUARANTINED": 1}}, 7)
    lines = out.render().splitlines()
    for expected in ('heal_stream_lag{group="fingerprint",stream="heal:errors"} 4',
                     'heal_stream_pending{group="fingerprint",stream="heal:errors"} 2',
                     "heal_dead_letters 3", "heal_fixes_applied_total 5",
                     "heal_dead_letter_last_timestamp_seconds 1700000000.25",
                     "heal_fixes_reverted_total 2", 'heal_fixes_by_state{state="ACTIVE"} 30',
                     "heal_issues_open 7", "# TYPE heal_dead_letters gauge"):
        assert expected in lines, expected
