"""Secrets the redaction once let through in clear, and the ordinary text it must not touch.

QA found three ways a secret reached the streams: a ``DB_PASSWORD=``-style assignment (the
rule began with ``\\b``, so ``_PASSWORD`` never matched), the default step name of ``heal
run`` (the command line, unredacted), and a cut (the 32 KiB tail of ``heal run``, the
head and tail of an oversized text) that split a secret from its key.
"""

from __future__ import annotations

import orjson
import pytest

from pipeline.events import ErrorEvent, Workflow, truncate_text
from pipeline.redact import (
    CUT_MARGIN,
    redact,
    redact_argv,
    redacted_head,
    redacted_tail,
)
from producers.interceptor import TailBuffer
from producers.run import RunOptions, run_step

ASSIGNMENTS = [
    ("DB_PASSWORD=hunter2xyz", "hunter2xyz"),
    ("POSTGRES_PASSWORD=x1a", "x1a"),
    ("MYSQL_PWD=x2a", "x2a"),
    ("PGPASSWORD=x3a psql -h db", "x3a"),
    ("SECRET_KEY=dj1abc", "dj1abc"),
    ("STRIPE_API_KEY=abc123", "abc123"),
    ("NPM_TOKEN=abc123", "abc123"),
    ("//registry.npmjs.org/:_authToken=npm_abc123", "npm_abc123"),
    ("--password hunter3", "hunter3"),
    ("mysql --password=hunter4 -u root", "hunter4"),
    ("DB_PASS=abc123", "abc123"),
    ("secret_key: 'abc123'", "abc123"),
    ('{"token": "tok123", "user": "bob"}', "tok123"),
    ("GET /x?token=tok456&page=2", "tok456"),
    ("x-auth-token: tok789", "tok789"),
    ("accessToken=tok000", "tok000"),
    ("$ export PUBLIC_GITHUB_TOKEN=16edc0b78343268fd3e3f3df777dc225405b2477",
     "16edc0b78343268fd3e3f3df777dc225405b2477"),  # (a LogChunks log holds this one)
    ("password => 'perl1'", "perl1"),
    ("deploy --db-password d1x --auth-token t1x", "d1x"),
    ("deploy --db-password d1x --auth-token t1x", "t1x"),
    ("client_secret=cs1x", "cs1x"),
    ("password: ********", "********"),
]


@pytest.mark.parametrize(("text", "secret"), ASSIGNMENTS)
def test_password_assignments_of_every_common_form_are_redacted(text: str, secret: str) -> None:
    clean = redact(text)
    assert secret not in clean and "<redacted:password>" in clean
    assert redact(clean) == clean  # idempotent


#: ordinary log text (much of it from the Loghub and LogChunks logs of ../shared/data)
PROSE = [
    "token count: 5", "passed=3 failed=0", "bypass=1", "compass=north", "tokens=12 in prose",
    "SyntaxError: Unexpected token: punc (()", "Unexpected token ':' at line 3",
    "cat: /etc/passwd: Permission denied", "Number of tries to enter a password: 3",
    "rabbit_password: 2 unresolved calls", "PASS: test-foo", "FAIL: passwords_test",
    "Failed password for invalid user admin from 10.0.0.1 port 22 ssh2",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=",
    "Reference 'System.Web.Entity, Version=4.0.0.0, Culture=neutral, "
    "PublicKeyToken=b77a5c561934e089' not resolved",
    "mysql -p8080", "max_tokens=12",
    "the passport=valid", "password_policy: strict", "--password --verbose",
    "--password=<redacted:password>",
]


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_log_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_mysql_short_option_is_left_alone_as_ambiguous() -> None:
    # ``-pVALUE`` is also ``-p8080``, ``-pthreads``: not a rule (README, "Secrets")
    assert redact("mysql -phunter5") == "mysql -phunter5"


def test_an_option_taking_a_secret_has_its_next_argument_redacted_in_an_argv() -> None:
    argv = ["mysql", "--password", "hunter3", "-u", "root", "--token=t0k", "--verbose",
            "-q", "--db-password", "--next", "--bypass", "keep"]
    assert redact_argv(argv) == [
        "mysql", "--password", "<redacted:password>", "-u", "root",
        "--token=<redacted:password>", "--verbose", "-q", "--db-password", "--next",
        "--bypass", "keep"]
    event = ErrorEvent(id="a1", text="x", command=tuple(argv))
    assert "hunter3" not in event.encode().decode()
    decoded = ErrorEvent.decode(b'{"v":1,"id":"a","text":"x","command":["psql","--password",'
                                b'"hunter3"]}')
    assert decoded.command == ("psql", "--password", "<redacted:password>")


def test_workflow_source_and_repo_fields_are_redacted_when_built_and_decoded() -> None:
    step = "deploy --password=cmdlinepw123 https://u:urlpw456@example.com"
    built = ErrorEvent(id="w1", text="boom", workflow=Workflow(id="ci", step=step))
    raw = (b'{"v":1,"id":"w2","text":"boom","workflow":{"step":"deploy --password=cmdlinepw123'
           b' https://u:urlpw456@example.com","id":"NPM_TOKEN=tok1"},'
           b'"source":{"name":"api_key=k1x"},"repo":{"branch":"x?token=t2x"}}')
    decoded = ErrorEvent.decode(raw)
    for event in (built, decoded, ErrorEvent.decode(raw)):  # (the second decode: cached)
        blob = event.encode().decode()
        for secret in ("cmdlinepw123", "urlpw456", "tok1", "k1x", "t2x"):
            assert secret not in blob
    assert decoded.workflow.step == built.workflow.step == redact(step)


def test_the_step_heal_run_derives_is_redacted_before_its_cut_and_a_fixed_point() -> None:
    argv = ["sh", "-c", "echo boom >&2; exit 1", "--password=cmdlinepw123",
            "https://user:urlpw456@example.com", "--token", "tok789"]
    step = run_step(RunOptions(argv))
    assert "cmdlinepw123" not in step and "urlpw456" not in step and "tok789" not in step
    assert redact(step) == step  # the event's own redaction keeps it: the step key matches
    # a secret across the 200-character cut: redacted first, so no rest of it is kept
    long = ["x" * 180, "https://user:urlpw456@example.com"]
    assert "urlpw" not in run_step(RunOptions(long)) and len(run_step(RunOptions(long))) <= 200
    assert run_step(RunOptions(argv, step="ci --password=p4ss")) == (
        "ci --password=<redacted:password>")


QA_OUTPUT = "head\npassword=CutSecret9876\n"


@pytest.mark.parametrize("filler", [990, 995, 1000, 1005, 1010])
def test_a_tail_cut_inside_a_secret_keeps_no_part_of_it(filler: int) -> None:
    text = QA_OUTPUT + "." * filler + "\nboom\n"
    for limit in range(filler - 2, filler + 30):  # every cut through the secret's line
        assert "9876" not in redacted_tail(text, limit), limit
        # a text that is itself the end of something longer (a buffer's tail)
        assert "9876" not in redacted_tail(text[-limit:], limit, started_inside=True), limit
        assert len(redacted_tail(text, limit).encode()) <= limit


def test_the_tail_buffer_of_heal_run_keeps_no_part_of_a_cut_secret() -> None:
    for filler, limit in ((1000 + 10 - 33, 1000), (1000 + CUT_MARGIN + 5, 1000)):
        buffer = TailBuffer(limit)
        for chunk in (QA_OUTPUT.encode(), b"." * filler, b"\nboom\n"):
            buffer.append(chunk)
        tail = buffer.text()
        assert "Secret" not in tail and "9876" not in tail and tail.endswith("boom\n")
        assert buffer.truncated and len(tail.encode()) <= limit


def test_a_cut_pem_key_keeps_none_of_its_body() -> None:
    body = "\n".join("MIIBOgIBAAJBALe7hs26gV3XnU6CCgJeyE0yY7PJyCjCoTMl" + str(i) for i in range(20))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"
    text = "start\n" + pem + "." * 500 + "\nend\n"
    for limit in range(500, len(text), 37):
        assert "MIIB" not in redacted_tail(text, limit)
        assert "MIIB" not in redacted_tail(text[-limit:], limit, started_inside=True)
        assert "MIIB" not in redacted_head(text[::-1][::-1], limit)


def test_an_oversized_text_cut_inside_a_secret_keeps_no_part_of_it() -> None:
    limit = 4096
    head_cut, tail_cut = limit // 4, limit - limit // 4
    for shift in range(-20, 20, 3):
        # a secret across the head's cut, and another across the tail's
        text = ("." * (head_cut - 12 + shift) + "https://u:HeadSecret42@h/x\n" + "." * 50_000
                + "\npassword=TailSecret42\n" + "." * (tail_cut - 14 + shift) + "\n")
        kept, cut = truncate_text(text, limit)
        assert "Secret42" not in kept and "ecret4" not in kept and cut > 49_000
        assert len(kept.encode()) <= limit + 64
        event = ErrorEvent.decode(orjson.dumps({"v": 1, "id": "t", "text": text}),
                                  max_text_bytes=limit)
        assert "Secret42" not in event.text and "ecret4" not in event.text


def test_redacted_head_drops_a_partial_last_line() -> None:
    text = "first line\nsee https://u:HeadSecret42@h/x\n" + "." * 100
    for limit in range(12, 40):
        assert "HeadSec" not in redacted_head(text, limit) and "Secret4" not in (
            redacted_head(text, limit))
