"""Stable, versioned hashes (in the spirit of Sentry's named grouping configurations).

Every hash carries the algorithm version as a prefix (``fp-v2:3f2a...``), so a fingerprint
computed by another algorithm can never be mistaken for this one. Changing anything that
alters a hash (the rule table, extraction, what goes into the coarse or fine key) means a
new entry in ``VERSIONS`` and a new ``ALGORITHM_VERSION``, never silently different hashes;
the snapshot tests under ``tests/unit/snapshots/<version>/`` make such a change visible.
"""

from __future__ import annotations

import hashlib

ALGORITHM_VERSION = "fp-v8"

#: changelog of the fingerprint algorithm versions
VERSIONS: dict[str, str] = {
    "fp-v1": "rules table v1 (url..num), extraction of python/pytest/java/node/go/compiler/"
    "shell/log errors; coarse = kind + error class + top project frame function; fine = "
    "coarse parts + normalized message + project frames; templates by frequency mining",
    "fp-v2": "rules table v2: the 'code' rule keeps HTTP statuses, exit codes, signal and "
    "errno numbers (1-3 digits after their keyword) instead of masking them as <num>; a log "
    "line's header no longer takes a bare number before ':' for a logger name, and a message "
    "that starts with a number keeps its level word ('Error 429: ...'); unittest's 'FAILED "
    "(errors=1)' tally is not read as a pytest test id (the traceback decides)",
    "fp-v3": "terminal escape sequences are removed before extraction (a coloured and a plain "
    "copy are one error); rustc's and ruff's two-line diagnostics (message, then '--> file:"
    "line:col') are read as diagnostics; pytest collection errors take their 'E' line and "
    "their 'path:N: in func' frames (never read as compiler lines); a log error line that "
    "only reports a failed child ('ld returned 1 exit status') gives way to the line above "
    "it; the 'code' rule keeps npm's E401 after 'code' and a status before a full stop "
    "('exit code 137.'); dotted versions are masked whole (1.2.3, v1.2.3); CI checkout "
    "roots (GitLab /builds, GitHub /home/runner/work and /__w, Jenkins, Buildkite, "
    "/workspace) are collapsed like home folders; npm 8's 'npm ERR!' is a level word",
    "fp-v4": "frames run outermost to innermost for every parser (JVM, Node and Go traces "
    "print them the other way, so their key took the outermost frames and the outermost "
    "function); a Go panic's frames are the panicking goroutine's only. Rust panics are read "
    "(message and location, old and new formats), never the RUST_BACKTRACE note; failing "
    "tests of cargo test, go test and jest and failed Gradle builds name the test or task as "
    "the innermost frame with the test's own message; a Java root cause with only '... N "
    "more' or module frames (java.base/, app//) is the last 'Caused by'; tsc's 'path:L:C - "
    "error TS' form is its 'path(L,C): error TS' form. Runner timestamps and a BOM are "
    "removed before extraction (pipeline/runnerlines.py, shared with watch/backfill); a "
    "Python exception's message no longer takes in the runner's or another tool's line "
    "after it; apt's 'E:' is a level word; npm E404/ERESOLVE and apt fill and mask "
    "params.package. A peer's address is one <host> with its port (IPv4, IPv6, host names, "
    "bare name:port after tcp/to/connect); dotted CamelCase class names are kept; pip's "
    "version lists, Kubernetes' (xN over T), RFC 1123/2822 dates, compound durations and "
    "xdist's [gwN] are masked; entry-point scripts are <bin>/NAME; /usr/src, /srv, /opt, "
    "/app, /code checkouts collapse like home folders. A runner's or build tool's line "
    "(make's '*** [...] Error N', a step's exit report, '##[error]') never heads a text "
    "holding anything else; a text no parser reads is headed by its best line by score (an "
    "exception's line, a program's diagnostic, an error code, a failure word; never a frame, "
    "tally, timing, seed or heading), not its last; rspec, vitest and unhandled .NET "
    "exceptions are parsed (the failing example or test as the innermost frame; .NET's last "
    "inner exception as the root cause). A Python traceback's exception is the first "
    "unindented line after its frames, whatever its class is called; a driver's LINE n:, "
    "caret, DETAIL: and HINT: lines are not its message; exception groups are read through "
    "their margins, the first sub-exception being the error. Go's relative internal/ is the "
    "project's code and GOROOT a library; a leading ./ is dropped; /src and /build collapse "
    "like /app; a bare peer name where the wording makes it a host, and localhost, are "
    "<host>; values after an id key and buildkit refs are one <id>; pre-release tags are "
    "part of a version; an HTTP status after StatusCode: is kept. The fine key holds the "
    "chain's other exceptions (class and masked message, up to five)",
    "fp-v5": "the coarse key of a log line, free text or a diagnostic without a code holds "
    "its level and the message's first six plain words (not two), and a compiler "
    "diagnostic's 'where' is its language (file extension); a banner or verdict line "
    "(==N==ABORTING, FAILURES!, BUILD FAILURE) and a diff or shell-trace line never head a "
    "text holding anything else; a level line takes in the exception printed under it, and "
    "one ending in ':' the first lines of its indented block; GHC's code is its error class "
    "and its message the indented line below; a port before 'failed' is no test tally. "
    "node:test's TAP and spec reports are parsed (the failing test the innermost frame); "
    "cargo test's failing test is the first of its sorted failures list, never the first "
    "thread to panic; params file/line come from the innermost project frame with a line. "
    "CI runner checkouts (GitHub, GitLab, Buildkite, Jenkins workspaces, Azure, TeamCity, "
    "Windows runners) collapse to the path inside the repository; /Volumes/NAME like a home "
    "folder; a peer name:port after 'on' or inside '(' is one <host>; a syslog line's host "
    "and an Erlang node's host are <host>; a missing module given by path is a path, not a "
    "package; dated index names, request paths and all-digit image tags are masked. "
    "A JSON or logfmt line at an error level is its message and error fields with its "
    "level (kind log); a coarse key with no plain word takes the message's identifiers, else "
    "its masked message, never one constant; PHPUnit failures are parsed (the test the "
    "innermost frame, the first by name)",
    "fp-v6": "a text with no line saying what failed is keyed on how its command ended "
    "(killed by SIGSEGV; exit N and its line) when the event says so; a missing module, "
    "package, command or imported name stays in the fine key (masked in the coarse one); "
    "the coarse key of a structured error holds its class and the first three words saying "
    "what kind of failure it is; a frame's file is its path inside the project under any "
    "checkout root (home folders, /Users, C:\\Users, /srv, /opt, containers, CI runners), "
    "keyed by its last three components; sanitizer reports (bug kind, program, the "
    "program's frames) and Swift runtime crashes are parsed, kotlinc's e: lines outside "
    "Gradle are diagnostics, exception groups without their header and pytest failures "
    "raising one are keyed by the first sub-exception; a runner's verdict and bookkeeping "
    "lines and npm's report of a failed script never head a text or continue a Python "
    "message (which continues only where its first line left something open), advice and "
    "GHC call-stack lines lose to the line naming the failure; syslog hosts whatever "
    "precedes them, pod names and quoted user names are masked; kubectl ages are durations",
    "fp-v7": "a value the message says is the input being parsed or converted is masked "
    "(int() literals, For input string, JSON.parse's token and snippet; the target type "
    "kept); UBSan runtime errors (the UB kind, the program's frames), XCTest failures (the "
    "test, the assertion), GHC call stacks (the program's frames), Elixir/Erlang frames and "
    "ExUnit failures are parsed, and a frame line is never a severity-less diagnostic; a "
    "line that only reports a failure (outcome words, no cause) never heads over a line "
    "naming the cause, of reports the first, a warning before a wrapper's plain trailer; an "
    "exception line under a log line is attached whatever words it holds, an SDK error "
    "line keeps its class; the coarse key's kind words take the values of kind labels "
    "(code, type, result, reason) and skip boilerplate and the class's own words; a deploy's "
    "release folder is no part of a frame's path; ids without a digit after an id key or a "
    "short kind prefix, short fleet hosts (web-3) and field-path indexes are masked",
    "fp-v8": "a constant per-line log prefix (logcat's columns, a compose service tag) is "
    "read past before the Java trace parser, Android's ANR reports key on their reason and "
    "android/dalvik frames are platform frames; Spring Boot's log header and its 'APPLICATION "
    "FAILED TO START' description, .NET ILogger records (fail:/crit:, the innermost "
    "exception) are parsed; a 'Label: value' verdict line and an UPPER_SNAKE setting without "
    "error evidence never head, PowerShell's gutter message and 'At path:N char:M' lines are "
    "read, docker/buildkit trailers are reports, a report line gives way to a later cause "
    "line of its level, box sides are read past and a place-only line takes the line under "
    "it; a browser frame's URL origin and an asset's content hash are cut; the coarse key "
    "takes a quoted message and the names of a text whose key words only say it failed; "
    "Dart identity hashes, generated k8s suffixes and mixed-case random ids are masked; "
    "MySQL's [MY-NNNNNN] code is kept; a compose service's prefix is cut from every line "
    "and each service's lines are read together, so interleaving never changes a key; an "
    "ANR report needs its own line and a Reason, and a crash trace wins over it; an "
    "UPPER_SNAKE code followed by a message is an error code, a one-token field value never "
    "heads, and a mixed-case id is masked only in a case pattern names never make",
}


def stable_hash(*parts: str, version: str = ALGORITHM_VERSION) -> str:
    """``<version>:<16 hex>`` of the parts (joined with a separator no part contains)."""
    # one buffer, hashed at once: the same bytes as feeding the version, then a separator
    # and each part in turn (no part holds a separator, so no character can pair across
    # parts when encoding), for a third of the calls
    joined = "\x1f".join([version, *[p.replace("\x1f", " ") for p in parts]])
    digest = hashlib.blake2b(joined.encode("utf-8", "replace"), digest_size=8)
    return f"{version}:{digest.hexdigest()}"
