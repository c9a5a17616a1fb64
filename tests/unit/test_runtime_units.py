"""Unit tests of the runtime's pure parts: options, backoff, retry schedule, decisions,
hooks, metrics, dead-letter fields, stage loading (no Redis needed)."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Sequence
from typing import Any

import pytest

from pipeline.errors import (
    DamagedCache,
    DatabaseUnavailable,
    PermanentError,
    Retry,
    UsageError,
)
from pipeline.runtime import loader
from pipeline.runtime.backoff import backoff_delay
from pipeline.runtime.deadletter import dead_letter_fields, guess_error_id
from pipeline.runtime.handoff import Handoff
from pipeline.runtime.hooks import Delivery, Hook, HookChain
from pipeline.runtime.metrics import MetricsHook, MetricsRegistry
from pipeline.runtime.noop import PassThroughHandler
from pipeline.runtime.options import Retention, WorkerOptions
from pipeline.runtime.processing import DeadLetter, EventProcessor, RetryLater
from pipeline.runtime.retries import RetrySchedule

RAW = b'{"v":1,"id":"e1","text":"boom"}'


def delivery(raw: bytes | None = RAW, deliveries: int = 1) -> Delivery:
    return Delivery("p:errors", "1-0", raw, deliveries)


def processor(
    on_event: Any = None, hooks: Sequence[Hook] = (), max_deliveries: int = 3
) -> EventProcessor:
    options = WorkerOptions(max_deliveries=max_deliveries, backoff_base_s=1, backoff_cap_s=5)
    return EventProcessor(
        "fingerprint", PassThroughHandler(on_event=on_event), HookChain(hooks), options
    )


# --- options and backoff ---------------------------------------------------------------

def test_retention_specs_parse_and_bad_ones_say_what_is_accepted() -> None:
    assert Retention.parse("none").trim_args() == ("none", "")
    assert Retention.parse("maxlen:500").trim_args() == ("maxlen", "500")
    mode, minid = Retention.parse("age:2h").trim_args(now=10_000.0)
    assert (mode, minid) == ("minid", f"{(10_000 - 7200) * 1000}-0")
    with pytest.raises(UsageError, match="maxlen:N"):
        Retention.parse("forever")
    with pytest.raises(UsageError):
        Retention.parse("maxlen:0")


def test_options_out_of_range_name_the_flag() -> None:
    with pytest.raises(UsageError, match="--batch"):
        WorkerOptions(batch_size=0).validate()


def test_no_read_ahead_flag_turns_the_overlap_off_and_is_on_by_default() -> None:
    import argparse

    from pipeline.runtime.cliargs import add_worker_options, options_from_args

    parser = argparse.ArgumentParser()
    add_worker_options(parser)
    options, explicit = options_from_args(parser.parse_args([]))
    assert options.read_ahead and "read_ahead" not in explicit
    options, explicit = options_from_args(parser.parse_args(["--no-read-ahead"]))
    assert not options.read_ahead and "read_ahead" in explicit


def test_a_hook_chain_skips_timing_and_calls_of_methods_no_hook_overrides() -> None:
    """Without an after_handle hook the handler is not timed; with one added later to the
    same chain, it is (the processor holds the chain's live lists)."""
    chain = HookChain([])
    proc = EventProcessor("fingerprint", PassThroughHandler(), chain, WorkerOptions())
    assert not chain.bound("after_handle") and not chain.bound("before_handle")
    event = proc.decode(delivery())
    assert isinstance(proc.handle(delivery(), event), Handoff)
    registry = MetricsRegistry()
    chain.add(MetricsHook(registry))
    proc.handle(delivery(), event)
    assert registry.snapshot()["fingerprint"]["handled"] == 1


def test_backoff_is_exponential_capped_and_honours_requested_delay() -> None:
    assert [backoff_delay(a, 0.5, 3.0) for a in (1, 2, 3, 4, 50)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(1, 0.5, 3.0, requested=2.5) == 2.5
    assert backoff_delay(1, 0.5, 3.0, requested=99) == 3.0


def test_retry_schedule_releases_entries_when_due_in_order() -> None:
    schedule = RetrySchedule()
    schedule.add("b", 2.0, now=0.0)
    schedule.add("a", 1.0, now=0.0)
    assert schedule.pop_due(10, now=0.5) == []
    assert schedule.seconds_until_next(now=0.5) == 0.5
    assert schedule.pop_due(10, now=3.0) == ["a", "b"]
    assert len(schedule) == 0


def test_parked_entries_are_deferred_behind_the_last_park_and_hastened_when_it_is_over() -> None:
    schedule = RetrySchedule()
    for name, delay in (("a", 0.5), ("b", 1.0), ("c", 8.0), ("x", 0.5)):
        schedule.add(name, delay, now=0.0)
    schedule.reschedule({"a", "b", "c"}, 4.0, later_only=True)  # x is no parked entry
    assert schedule.pop_due(10, now=3.9) == ["x"]
    assert schedule.pop_due(10, now=4.0) == ["a", "b"]  # c was due later: left alone
    schedule.reschedule({"c"}, 5.0, later_only=False)  # the outage is over: due now
    assert schedule.pop_due(10, now=5.0) == ["c"]


def test_an_uncounted_retry_waits_past_max_deliveries_without_dead_lettering() -> None:
    def waiting(event: Any) -> None:
        raise Retry("held by a live peer", delay=2.5, counted=False)

    decision = processor(on_event=waiting, max_deliveries=3).process(delivery(deliveries=3))
    assert isinstance(decision, RetryLater) and not decision.counted
    assert decision.delay_s == 2.5 and not decision.outage


def test_a_park_is_not_counted_as_an_attempt() -> None:
    """An outage parks the event at its last allowed delivery: not counted (the worker hands
    the count back), so it is never dead-lettered by waiting for the engine."""
    def down(event: Any) -> None:
        raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")

    decision = processor(on_event=down, max_deliveries=3).process(delivery(deliveries=3))
    assert isinstance(decision, RetryLater) and decision.outage and not decision.counted
    assert decision.reason.startswith("parked during an outage")


def test_a_damaged_cache_found_by_a_handler_stops_the_stage_instead_of_parking() -> None:
    def damaged(event: Any) -> None:
        raise DamagedCache("cannot read the local cache /x: database disk image is malformed")

    with pytest.raises(DamagedCache, match="malformed"):
        processor(on_event=damaged).process(delivery())


def test_an_outage_is_logged_once_per_state_change_and_its_parks_back_off(
        caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.runtime.processing import Outage

    outage = Outage("apply")
    with caplog.at_level(logging.WARNING, logger="heal.runtime"):
        delays = [outage.parked("db down", 0.5, 30.0, now=float(i)) for i in range(8)]
        outage.parked("db down", 0.5, 30.0, now=61.0)  # a minute later: still down
        outage.over(now=62.0)
        outage.over(now=63.0)  # not in an outage: nothing to say
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "engine outage: db down" in messages[0]
    assert "engine outage goes on (61s, 9 parks" in messages[1]
    assert "engine outage over after 62s" in messages[2]
    assert outage.take_recovered() and not outage.take_recovered()


# --- decisions ---------------------------------------------------------------------------

def test_a_handled_event_is_handed_off_with_its_event_id_for_dedupe() -> None:
    decision = processor().process(delivery())
    assert decision == Handoff("1-0", [RAW], "e1")


def test_entry_without_event_field_is_dead_lettered_with_how_to_publish() -> None:
    decision = processor().process(delivery(raw=None))
    assert isinstance(decision, DeadLetter) and "XADD" in decision.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"not json", "not valid JSON"), (b'{"text":"x"}', "missing required field 'id'")],
)
def test_undecodable_input_is_dead_lettered_at_once(raw: bytes, reason: str) -> None:
    decision = processor().process(delivery(raw=raw))
    assert isinstance(decision, DeadLetter) and reason in decision.reason


def test_permanent_error_dead_letters_with_the_reason() -> None:
    def fail(_event: object) -> None:
        raise PermanentError("repository is gone")

    decision = processor(fail).process(delivery())
    assert isinstance(decision, DeadLetter) and "repository is gone" in decision.reason


def test_retry_backs_off_then_dead_letters_after_max_deliveries() -> None:
    def busy(_event: object) -> None:
        raise Retry("database busy")

    first = processor(busy).process(delivery(deliveries=1))
    second = processor(busy).process(delivery(deliveries=2))
    last = processor(busy).process(delivery(deliveries=3))
    assert isinstance(first, RetryLater) and first.delay_s == 1.0
    assert isinstance(second, RetryLater) and second.delay_s == 2.0
    assert isinstance(last, DeadLetter)
    assert "gave up after 3 attempts: database busy" in last.reason


def test_unexpected_handler_exception_is_retried_not_fatal() -> None:
    def bug(_event: object) -> None:
        raise KeyError("oops")

    decision = processor(bug).process(delivery())
    assert isinstance(decision, RetryLater) and "KeyError" in decision.reason


def test_an_event_redelivered_too_often_is_dead_lettered_before_handling() -> None:
    seen: list[object] = []
    decision = processor(seen.append).process(delivery(deliveries=4))
    assert isinstance(decision, DeadLetter) and "delivered 4 times" in decision.reason
    assert seen == []


# --- hooks and metrics -------------------------------------------------------------------

class Broken(Hook):
    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        raise RuntimeError("exporter down")

    def after_handle(self, stage: str, event: Any, outputs: Sequence[Any], s: float) -> None:
        raise RuntimeError("exporter down")


class OpenBreaker(Hook):
    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        raise Retry("breaker open", delay=4.0)


def test_a_failing_hook_is_contained_and_the_event_still_handed_off() -> None:
    registry = MetricsRegistry()
    decision = processor(hooks=[Broken(), MetricsHook(registry)]).process(delivery())
    assert isinstance(decision, Handoff)
    assert registry.snapshot()["fingerprint"]["handled"] == 1


def test_control_flow_from_a_hook_passes_through() -> None:
    decision = processor(hooks=[OpenBreaker()]).process(delivery())
    assert isinstance(decision, RetryLater) and decision.delay_s == 4.0


def test_metrics_hook_counts_per_stage() -> None:
    registry = MetricsRegistry()
    hook = MetricsHook(registry)
    hook.after_handle("lookup", None, [], 0.003)
    hook.after_handle("lookup", None, [], 0.2)
    hook.on_retry("lookup", delivery(), "x", 1.0)
    hook.on_dead_letter("lookup", delivery(), "x")
    hook.after_handoff("lookup", 2, 3, 1)
    m = registry.snapshot()["lookup"]
    assert (m["handled"], m["retries"], m["dead_letters"]) == (2, 1, 1)
    assert (m["acked"], m["emitted"], m["duplicates"]) == (2, 3, 1)
    assert m["latency_max_s"] == 0.2 and sum(m["latency_buckets"]) == 2


# --- dead letters --------------------------------------------------------------------------

def test_dead_letter_fields_cap_the_raw_bytes_and_keep_the_error_id() -> None:
    raw = b'{"id":"big-1","text":"' + b"x" * 5000 + b'"}'
    fields = dead_letter_fields(delivery(raw, 2), "fingerprint", "fingerprint", "why", 1000)
    assert fields["event"] == raw[:1000]
    assert fields["raw_truncated_bytes"] == str(len(raw) - 1000)
    assert (fields["attempts"], fields["error_id"], fields["reason"]) == ("2", "big-1", "why")
    assert guess_error_id(b"garbage") == ""


# --- stage loading -------------------------------------------------------------------------

def test_unknown_stage_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="the stages are"):
        loader.load_stage("nope")


def test_a_stage_without_module_is_not_built_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(loader.STAGES, "ghost", ("errors", "fingerprints"))
    with pytest.raises(loader.StageNotBuilt, match="stage ghost is not built yet"):
        loader.load_stage("ghost")
    assert "ghost" not in [s.name for s in loader.built_stages()]


def test_a_consumer_module_is_loaded_with_its_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("consumers.ghost")
    module.GROUP, module.INPUT, module.OUTPUT = "ghost", "errors", "fingerprints"  # type: ignore[attr-defined]
    module.BATCH_SIZE = 7  # type: ignore[attr-defined]
    module.build = lambda ctx: PassThroughHandler()  # type: ignore[attr-defined]
    monkeypatch.setitem(loader.STAGES, "ghost", ("errors", "fingerprints"))
    monkeypatch.setitem(sys.modules, "consumers.ghost", module)
    spec = loader.load_stage("ghost")
    assert (spec.group, spec.input, spec.output, spec.batch_size) == (
        "ghost", "errors", "fingerprints", 7)
    assert loader.stage_options(spec, WorkerOptions(), set()).batch_size == 7
    assert loader.stage_options(spec, WorkerOptions(batch_size=3), {"batch_size"}).batch_size == 3


def test_heal_partitions_is_validated_and_names_partition_keys() -> None:
    from pipeline.config import Settings
    from pipeline.errors import ConfigError

    assert Settings.from_env({}).partitions == 1
    assert Settings.from_env({}).stream("errors") == "heal:errors"
    three = Settings.from_env({"HEAL_PARTITIONS": "3"})
    assert three.stream("errors") == "heal:errors"  # not bound to a partition
    assert [v.stream("errors") for v in three.partition_views()] == [
        "heal:errors:{0}", "heal:errors:{1}", "heal:errors:{2}"]
    assert three.in_partition(1).partition_key("done", "lookup", "7") == "heal:done:lookup:7:{1}"
    assert three.in_partition(1).key("fp") == "heal:fp"  # global keys stay global
    assert three.partition_for("/srv/a") == three.partition_for("/srv/a")
    for bad in ("0", "-2", "three", "2000"):
        with pytest.raises(ConfigError, match="HEAL_PARTITIONS"):
            Settings.from_env({"HEAL_PARTITIONS": bad})


@pytest.mark.parametrize("bad", ["3_0", "٣", "+3", "03", "3.0", "1e3", "0x3", "3 0", "01024"])
def test_heal_partitions_takes_plain_ascii_digits_only(bad: str) -> None:
    from pipeline.config import Settings
    from pipeline.errors import ConfigError

    # int() takes underscores, signs, leading zeros and other scripts' digits: heal does not
    with pytest.raises(ConfigError, match=r"HEAL_PARTITIONS=.*whole number from 1 to 1024"):
        Settings.from_env({"HEAL_PARTITIONS": bad})


def test_heal_partitions_takes_no_whitespace_around_its_digits() -> None:
    from pipeline.config import Settings
    from pipeline.errors import ConfigError

    # the README promises plain ASCII digits: " 3" and "3\n" were taken as 3 (QA qa_walk 10)
    for bad in (" 3", "3\n", " 3\n", "  "):
        with pytest.raises(ConfigError, match=r"with no space or newline around it"):
            Settings.from_env({"HEAL_PARTITIONS": bad})
    assert Settings.from_env({"HEAL_PARTITIONS": "1024"}).partitions == 1024
    assert Settings.from_env({"HEAL_PARTITIONS": ""}).partitions == 1
