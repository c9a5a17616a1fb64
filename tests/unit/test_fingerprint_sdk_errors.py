"""API client (SDK) errors under and inside log lines, and the coarse key's kind words (QA
s18a D2, D7). Texts written for these tests (other clients, providers and wording than the
QA corpus), not copied from it."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.cluster import tokenize
from pipeline.fingerprint.fingerprinter import kind_words
from tests._diagnose import diagnose_fingerprints


def _fp(text: str) -> tuple[str, str]:
    found = fingerprint_text(text)
    return found.fine, found.coarse


# -- D2: the exception line under a log line, whatever words it holds ---------------------------

_WRAPPER = "2026-12-01T08:15:00Z ERROR billing.sync: invoice batch {n} aborted\n{exc}\n"
_UNAVAILABLE = ("groq.InternalServerError: Error code: 503 - {{\"error\": {{\"message\": "
                "\"Service Unavailable ({req})\", \"type\": \"internal_server_error\"}}}}")
_THROTTLED = ("groq.RateLimitError: Error code: 429 - {{\"error\": {{\"message\": \"Rate limit "
              "reached: used {n} of 6000 tokens ({req})\", \"type\": \"tokens\", "
              "\"code\": \"rate_limit_exceeded\"}}}}")


def test_an_sdk_error_under_a_wrapper_log_line_is_its_detail() -> None:
    unavailable = _WRAPPER.format(n=3, exc=_UNAVAILABLE.format(req="req_81ac3f"))
    throttled = _WRAPPER.format(n=3, exc=_THROTTLED.format(n=5120, req="req_81ac3f"))
    assert "groq.InternalServerError: Error code: 503" in fingerprint_text(unavailable).normalized
    assert _fp(unavailable)[0] != _fp(throttled)[0]
    assert _fp(unavailable)[1] != _fp(throttled)[1]
    # (another batch, request id and token count: the same error)
    again = _WRAPPER.format(n=41, exc=_THROTTLED.format(n=5977, req="req_0fe29d"))
    assert _fp(throttled) == _fp(again)


def test_a_one_line_sdk_error_keeps_its_class_and_status() -> None:
    # a Mistral-style client: ``Error`` opens its message; the class and status are the error
    limited = ('mistralai.SDKError: Error: API error occurred: Status 429 {"object":"error",'
               '"message":"Requests rate limit exceeded","type":"rate_limited"}')
    unauthorized = ('mistralai.SDKError: Error: API error occurred: Status 401 {"object":'
                    '"error","message":"Requests rate limit exceeded","type":"rate_limited"}')
    found = fingerprint_text(limited)
    assert found.extraction.error_type == "mistralai.SDKError"
    assert "Status 429" in found.normalized
    assert _fp(limited)[0] != _fp(unauthorized)[0]
    # two classes of one client, same message: two errors
    assert _fp("acme_llm.RateLimitError: Error code: 429 - too large")[0] != _fp(
        "acme_llm.BadRequestError: Error code: 400 - too large")[0]
    # inside a log line, after its logger: the class is not a logger name
    logged = ("2026-12-01 08:15:00,120 ERROR [worker-2] agent.core: "
              "cohere.errors.TooManyRequestsError: Error: status_code 429")
    assert "cohere.errors.TooManyRequestsError" in fingerprint_text(logged).normalized


# -- D7: the coarse key's kind words --------------------------------------------------------------

def test_coarse_key_keeps_an_apis_error_code_not_its_boilerplate() -> None:
    # a Stripe-like API error: one class, the body's code says which failure it is
    body = ("stripe.error.CardError: Error code: 402 - {{'error': {{'message': 'Request "
            "{req} failed, please retry', 'type': 'card_error', 'code': '{code}', "
            "'param': None}}}}")
    declined = body.format(req="req_Q1w2E3", code="card_declined")
    expired = body.format(req="req_Z9x8C7", code="expired_card")
    assert _fp(declined)[1] != _fp(expired)[1]
    assert _fp(declined) == _fp(body.format(req="req_A7s6D5", code="card_declined"))
    words = kind_words(tokenize("Error code: 402 - {'error': {'message': 'Request failed, "
                                "please retry', 'type': 'card_error', 'param': None}}"))
    assert "card_error" in words and "none" not in words and "code" not in words


def test_coarse_key_keeps_a_quoted_result_kind() -> None:
    # a timer's unit (not systemd's wording): the quoted result is the only word of the kind
    killed = "backup.timer: Finished with result 'oom-kill' after 2 attempts"
    timeout = "backup.timer: Finished with result 'timeout' after 3 attempts"
    assert _fp(killed)[1] != _fp(timeout)[1]
    # (the label's value first: it names the kind; the label itself gives way to it)
    assert kind_words(tokenize("pod web failed reason=Evicted")) == ["evicted", "pod", "web",
                                                                     "failed"]
    # (a quoted name that is no label's value stays out: two keys of one kind are one)
    assert _fp("lookup failed for key 'tenant_a'")[1] == _fp("lookup failed for key 'tenant_b'")[1]


def test_a_hostile_sdk_body_is_read_in_bounded_time() -> None:
    hostile = "vendor.APIError: Error code: 500 - " + "{'type': " * 4000 + "'x'" + "}" * 4000
    logged = "ERROR job failed\n" + hostile + "\n" + "a: " * 4000
    started = time.perf_counter()
    fingerprint_text(hostile)
    fingerprint_text(logged)
    fingerprint_text("ERROR " + "x.Y: " * 4000 + "Error code: 1")
    assert time.perf_counter() - started < 3  # (40 KB texts: linear)


# -- through the real command ---------------------------------------------------------------------

def test_diagnose_keeps_sdk_errors_behind_one_wrapper_apart(tmp_path: Path) -> None:
    out = diagnose_fingerprints(tmp_path, {
        "unavailable": _WRAPPER.format(n=7, exc=_UNAVAILABLE.format(req="req_5d1e")),
        "throttled": _WRAPPER.format(n=7, exc=_THROTTLED.format(n=4100, req="req_5d1e")),
        "throttled_again": _WRAPPER.format(n=9, exc=_THROTTLED.format(n=3300, req="req_77ab")),
        "alone_429": "acme_llm.RateLimitError: Error code: 429 - {'type': 'rate_limit_error'}\n",
        "alone_400": "acme_llm.BadRequestError: Error code: 400 - {'type': 'rate_limit_error'}\n",
        "quota": "acme_llm.RateLimitError: Error code: 429 - {'type': 'insufficient_quota'}\n",
    })
    assert out["unavailable"]["fine"] != out["throttled"]["fine"]
    assert out["throttled"]["fine"] == out["throttled_again"]["fine"]
    assert out["alone_429"]["fine"] != out["alone_400"]["fine"]
    assert out["alone_429"]["coarse"] != out["quota"]["coarse"]
