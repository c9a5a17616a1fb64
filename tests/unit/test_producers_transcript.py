"""Agent transcripts: failed tool calls become events with the command and output."""

from __future__ import annotations

import orjson

from producers.transcript import TranscriptReader, command_argv


def feed(lines: list[object]) -> tuple[TranscriptReader, list]:
    reader = TranscriptReader("/t/session.jsonl", lambda: "ident")
    events = []
    offset = 0
    for number, obj in enumerate(lines, 1):
        text = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
        events += reader.feed(text, offset, offset + len(text) + 1, number)
        offset += len(text) + 1
    return reader, events


CLAUDE = [
    {"type": "assistant", "sessionId": "s1", "cwd": "/repo", "gitBranch": "main",
     "message": {"content": [{"type": "text", "text": "running tests"},
                             {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                              "input": {"command": "pytest -q tests/"}}]}},
    {"type": "user", "sessionId": "s1", "cwd": "/repo", "gitBranch": "main",
     "timestamp": "2026-11-22T10:00:00Z",
     "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                              "content": "Exit code 1\nE   ModuleNotFoundError: "
                                         "No module named 'yaml'",
                              "is_error": True}]}},
    {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "ls"}}]}},
    {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "a b", "is_error": False}]}},
]


def test_claude_code_failed_bash_call_becomes_one_event() -> None:
    reader, events = feed(CLAUDE)
    (event,) = events
    assert event.command == ("pytest", "-q", "tests/")
    assert event.exit_code == 1
    assert "No module named 'yaml'" in event.text
    assert event.source.kind == "transcript"
    assert (event.workflow.id, event.workflow.step) == ("s1", "Bash")
    assert (event.repo.path, event.repo.branch) == ("/repo", "main")
    assert event.ts == "2026-11-22T10:00:00Z"
    assert event.tags["tool_call_id"] == "toolu_1"
    # deterministic: the same transcript gives the same id
    assert feed(CLAUDE)[1][0].id == event.id


def test_top_level_blocks_and_list_content() -> None:
    _, events = feed([
        {"type": "tool_use", "id": "c1", "name": "Read", "input": {"file_path": "/x.py"}},
        {"type": "tool_result", "tool_use_id": "c1", "is_error": True,
         "content": [{"type": "text", "text": "File does not exist."}]},
    ])
    (event,) = events
    assert event.text == "File does not exist."
    assert event.command == () and event.exit_code is None
    assert orjson.loads(event.tags["tool_input"]) == {"file_path": "/x.py"}


def test_generic_shape_and_successes_and_garbage() -> None:
    reader, events = feed([
        {"tool": "bash", "input": {"command": "make build | tee log"},
         "output": "make: *** [all] Error 2", "exit_code": 2},
        {"tool": "bash", "input": {"command": "true"}, "output": "", "exit_code": 0},
        "not json at all",
        [1, 2],
        {"tool": "http", "input": {"url": "x"}, "error": "timeout"},
    ])
    assert [e.exit_code for e in events] == [2, None]
    # shell syntax is never turned into `sh -c <string>`: it stays data
    assert events[0].command == ()
    assert events[0].tags["shell_command"] == "make build | tee log"
    assert events[1].text == "timeout"
    assert reader.skipped == 2


def test_command_argv_splits_plain_commands_only() -> None:
    assert command_argv("pytest -q 'a b'") == ["pytest", "-q", "a b"]
    assert command_argv("cd x && make") == []


def test_a_transcript_line_cut_by_its_reader_is_skipped_and_counted() -> None:
    from producers.transcript import TranscriptReader

    reader = TranscriptReader("/t.jsonl", lambda: "id")
    assert reader.feed('{"tool": "bash", "output": "…[heal: 9 bytes truncated]…', 0, 99, 1,
                       cut=9) == []
    assert (reader.lines, reader.skipped, reader.too_long) == (1, 1, 1)


def test_a_timestamp_that_is_not_iso_8601_is_replaced_by_the_read_time() -> None:
    from producers.transcript import TranscriptReader

    reader = TranscriptReader("/t.jsonl", lambda: "id")
    line = ('{"tool": "bash", "input": {"command": "make"}, "output": "boom", '
            '"exit_code": 2, "timestamp": 1700000000}')
    (event,) = reader.feed(line, 0, len(line), 1)
    assert event.ts.endswith("Z") and event.ts[:2] == "20"
