"""Regressions of fp-v8's headline and mask changes (QA s19d D2, D3, D7, D8, D9), told apart
by the shape of what a line holds, not by word lists: a code with a message is an error code
and a code with a value a setting; names made of words are no random ids; a place-only log
line never takes another record; a report gives way only to its own block; of a record's
fields the one with prose (or an exception's line) heads, and a neutral field never does.
Through ``heal diagnose --offline --json`` in a subprocess; a text "heads" on a line when it
has that line's own key (the line alone). The texts are my own."""

from __future__ import annotations

from pathlib import Path

from tests._diagnose import diagnose_fingerprints


def test_an_upper_snake_code_with_a_message_is_an_error_and_one_with_a_value_a_setting(
        tmp_path: Path) -> None:
    code = "uploading shard 4\n{line}\nshutting down uploader\n"
    env = ("##[group]Run ./publish.sh\nenv:\n  RELEASE_CHANNEL: stable\n"
           "  COMMIT_TITLE: Bump the parser and add tests\n##[endgroup]\n")
    cause = "Error: connect ECONNREFUSED 10.0.0.5:443\n"
    found = diagnose_fingerprints(tmp_path, {
        "range": code.format(line="OUT_OF_RANGE: Attempted to seek past the end of the stream"),
        "precondition": code.format(line="FAILED_PRECONDITION: The bucket is locked by policy"),
        "cert": code.format(line="UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first "
                                 "certificate"),
        "setting": code.format(line="UPLOAD_TARGET: gs://bucket-a/shards"),
        "plain": cause,
        "env": env + cause,
        "range_alone": "OUT_OF_RANGE: Attempted to seek past the end of the stream\n",
        "last_alone": "shutting down uploader\n",
    })
    assert found["range"]["fine"] == found["range_alone"]["fine"]
    assert len({found[n]["fine"] for n in ("range", "precondition", "cert")}) == 3
    assert found["setting"]["fine"] == found["last_alone"]["fine"]
    # (a prose value inside an env: block is still a setting)
    assert found["env"]["fine"] == found["plain"]["fine"]


def test_method_names_made_of_words_are_kept_and_random_case_ids_masked(tmp_path: Path) -> None:
    call = ("TypeError: Invoice.{name} is not a function\n"
            "    at settle (/srv/billing/src/invoices.js:41:17)\n")
    token = "AuthError: session {name} was revoked\n"
    found = diagnose_fingerprints(tmp_path, {
        "upsert": call.format(name="findOneAndReplaceByOwnerId"),
        "count": call.format(name="countByTenantIdAndIsArchived"),
        "token_a": token.format(name="qWeRtYzXpLmNbVcKj"),
        "token_b": token.format(name="ZxCvBnMaSdFgHjKlQw"),
    })
    assert found["upsert"]["fine"] != found["count"]["fine"]
    assert found["token_a"]["fine"] == found["token_b"]["fine"]


def test_a_place_only_line_never_takes_another_record(tmp_path: Path) -> None:
    text = "[2025-01-09 03:00:00] ERROR in /opt/etl/tasks/rollup.rb\n{next}\n"
    found = diagnose_fingerprints(tmp_path, {
        "a": text.format(next="[2025-01-09 03:00:01] INFO queue depth 812 after 4s"),
        "b": text.format(next="[2025-01-09 03:00:01] WARN shard eu-2 lagging behind"),
        "plain": "[2025-01-09 03:00:00] ERROR in /opt/etl/tasks/rollup.rb\n",
    })
    assert found["a"]["fine"] == found["b"]["fine"] == found["plain"]["fine"]


def test_a_place_only_line_takes_its_error_whose_message_holds_a_level_word(
        tmp_path: Path) -> None:
    text = ("ERROR in ./src/widgets/Chart.vue?vue&type=script 7:0-41\n"
            "Module not found: Error: Can't resolve '{name}' in '/home/ci/web/src/widgets'\n")
    found = diagnose_fingerprints(tmp_path, {"a": text.format(name="./Legend"),
                                             "b": text.format(name="d3-scale")})
    assert found["a"]["fine"] != found["b"]["fine"]


def test_a_report_gives_way_only_to_a_line_of_its_own_block(tmp_path: Path) -> None:
    text = ("09:14:02.118 ERROR Failed to initialise cache warmer\n"
            "09:14:02.119 INFO scheduling retry in 30s\n"
            "09:14:03.502 ERROR lint at {file}:{line}:2 trailing comma\n")
    found = diagnose_fingerprints(tmp_path, {
        "a": text.format(file="web/static/app.js", line=12),
        "b": text.format(file="web/static/cart.js", line=88),
        "report": "09:14:02.118 ERROR Failed to initialise cache warmer\n",
    })
    assert found["a"]["fine"] == found["b"]["fine"] == found["report"]["fine"]


def test_of_a_records_fields_the_prose_or_exception_field_heads(tmp_path: Path) -> None:
    pod = ("Name:         {name}\nNamespace:    batch\nStatus:       Failed\n"
           "Reason:       {reason}\nMessage:      {message}\nRestart Count: 4\nExit Code:    137\n")
    event = ("Source:        .NET Runtime\nEvent ID:      1026\nLevel:         Error\n"
             "Description: The process was terminated due to an unhandled exception.\n"
             "Exception Info: {exc}\n")
    found = diagnose_fingerprints(tmp_path, {
        "oom": pod.format(name="etl-88120-kq2lm", reason="OOMKilled",
                          message="Container etl exceeded its memory limit of 512Mi"),
        "image": pod.format(name="etl-88121-zz9pq", reason="ImagePullBackOff",
                            message="Back-off pulling image registry.local/etl:v9"),
        "nullref": event.format(exc="System.NullReferenceException: Object reference not set "
                                    "to an instance of an object."),
        "timeout": event.format(exc="System.TimeoutException: The operation has timed out."),
        "fields": "Job: nightly-sync\nStatus: Failed\nAttempts: 5\nFinished: 2025-01-09 04:00\n",
        "message_alone": "Message:      Back-off pulling image registry.local/etl:v9\n",
        "exception_alone": "Exception Info: System.NullReferenceException: Object reference "
                           "not set to an instance of an object.\n",
        "status_alone": "Status: Failed\n",
    })
    assert found["oom"]["fine"] != found["image"]["fine"]
    assert found["image"]["fine"] == found["message_alone"]["fine"]
    assert found["nullref"]["fine"] != found["timeout"]["fine"]
    assert found["nullref"]["fine"] == found["exception_alone"]["fine"]
    assert found["fields"]["fine"] == found["status_alone"]["fine"]
