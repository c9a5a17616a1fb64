"""Normalization rules as a data table (in the spirit of Sentry's ``parameterization.py``).

Each :class:`Rule` is a named verbose regex with a comment saying what it masks and why.
:class:`Normalizer` compiles the table into ONE alternation (one pass over the text, which
keeps throughput high) and replaces every match with ``<name>``, counting replacements per
rule; :meth:`Normalizer.explain` says what was masked.

Order matters: at one position the first rule in the table that matches wins, so specific
shapes (URLs, UUIDs, timestamps, IPs) come before generic ones (hashes, paths, numbers).
Changing this table changes fingerprints: bump ``ALGORITHM_VERSION`` in ``hashing.py``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """One masking rule: ``pattern`` (verbose regex) is replaced with ``<name>``."""

    name: str
    pattern: str
    why: str
    #: a rule that *keeps* what it matches (so a later rule does not mask it)
    keep: bool = False


#: Applied in a linear pre-pass before the table: a token this long is data (base64,
#: minified code, a run of dots), and the table's look-arounds would be quadratic on it.
_BLOB_MIN = 200
BLOB = Rule("blob", rf"\S{{{_BLOB_MIN},}}", f"tokens of {_BLOB_MIN}+ characters are data blobs")

RULES: tuple[Rule, ...] = (
    Rule("url", r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>)\]]+""",
         "scheme://... : hosts, paths and query strings vary per call"),
    Rule("email", r"""\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b""",
         "e-mail addresses identify people, not problems"),
    Rule("id", r"""
        (?:(?<=ID:\ )|(?<=Id:\ )|(?<=ID=)|(?<=Id=)|(?<=\ id:\ )|(?<=\ id=))  # RequestID: X
        (?=[\w+/-]*\d)(?=[\w+/-]*[A-Za-z])[\w+/-]+={0,2}(?![\w+/=-]|\.\w)  # base64, its padding
        |(?<=ref\ )[\w-]+(?:::[\w-]+)+(?![\w-])     # buildkit's ref moby::ID, UUID::ID
        # a random id without a digit (12 random letters and digits hold none about one time
        # in eight): after an id key (request_id=, webhook_id=, traceId=, id:) 8+ characters,
        # or after a short lowercase kind 10+ (org-jGKpJhUVGcmX, wh_jHrklOycHlqC), that look
        # random: twice a run of one or two lowercase letters between capitals (or first),
        # which no CamelCase word makes (PaymentHandler, getUserProfile, AcmeReportsEU,
        # XMLParser are names and stay; jG-Kp-Jh, jH-Oyc-Hl are not words)
        |(?:(?<=_id=)|(?<=_id:\ )|(?<=_ID=)|(?<=Id=)|(?<=Id:\ )|(?<=ID=)|(?<=ID:\ )
           |(?<=\ id=)|(?<=\ id:\ ))
         (?=[\w-]{0,80}?(?<![a-z])[a-z]{1,2}[A-Z][\w-]{0,80}?(?<![a-z])[a-z]{1,2}[A-Z])
         [\w-]{8,80}(?![\w=-]|\.\w)
        |(?<![\w-])[a-z]{2,6}[-_]           # (one with a digit too: both are <id>)
         (?=[A-Za-z\d]{0,80}?\d
            |[A-Za-z\d]{0,80}?(?<![a-z])[a-z]{1,2}[A-Z][A-Za-z\d]{0,80}?(?<![a-z])[a-z]{1,2}[A-Z])
         (?=[A-Za-z\d]{0,80}?[A-Z])[A-Za-z\d]{10,80}(?![\w-]|\.\w)""",
         "a value after an id key (S3's 'RequestID: ..., HostID: ...=') is an id whatever its"
         " characters (hex, base64 with its = padding); so is buildkit's 'ref BUILDER::ID';"
         " a digit-less random id is one by its shape: 8+ characters of mixed case after an"
         " id key (webhook_id=, traceId=), or 10+ after a short lowercase kind (org-, wh_)"),
    Rule("uuid", r"""\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b""",
         "UUIDs are per-object identifiers"),
    Rule("timestamp", r"""
        \b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}     # date part 2026-11-22
        (?:[T\s_-]\d{1,2}[:.]\d{2}[:.]\d{2}  # time part
           (?:[.,]\d+)?                      # fraction
           (?:Z|[+-]\d{2}:?\d{2})?)?         # zone
        \b""",
         "dates and date-times in ISO-like formats change on every occurrence"),
    Rule("datetext", r"""
        \b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?         # optional weekday
        (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?
        \s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?                   # time
        (?:\s+\d{4})?\b
        |\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?         # RFC 1123/2822:
        \d{1,2}[\s-](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*[\s-]\d{4}
        (?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?                # [time
           (?:\s+(?:[+-]\d{4}|GMT|UTC|Z)\b)?)?                      #  [zone]]
        (?![\w:])""",
         "syslog/ctime dates (Fri Jun 17 07:07:00 2005) and RFC 1123/2822 ones (Mon, 11 Nov"
         " 2024 10:00:00 +0000) change on every occurrence"),
    Rule("time", r"""\b\d{1,2}:\d{2}:\d{2}(?:[.,:]\d+)?\b(?!:[0-9a-fA-F])""",
         "clock times (HH:MM:SS[.fff]); not the start of a MAC/IPv6 address"),
    Rule("versions", r"""(?<=versions:\ )\d[\w.+!-]*(?:,\ \d[\w.+!-]*)*(?=\))""",
         "a list of available versions (pip's '(from versions: 2.0.0, 2.0.1)') grows with"
         " every upstream release; 'none' is kept"),
    # (linear: a version holds no ',' or space, so each step of the list has one way on)
    Rule("count", r"""(?<=\()x\d+(?=\ over\b)""",
         "an event's repeat count (Kubernetes' '(x12 over 5m)') grows while it repeats"),
    Rule("worker", r"""(?<=\[)gw\d+(?=\])""",
         "a pytest-xdist worker id ([gw3]) says where a test ran, not what failed"),
    Rule("pod", r"""
        (?<=[dD]\ |d=|d/|\ ")         # (one cheap look first: most positions fail here)
        (?:(?<=pod=)|(?<=pod/)|(?<=pod\ ")|(?<=Pod\ ")|(?<=pods\ ")   # a name by its syntax
           |(?:(?<=pod\ )|(?<=Pod\ ))(?=[a-z0-9.]{0,253}[\d-]))  # in prose: a digit or '-'
        [a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?(?:_[a-z0-9-]{1,63})?(?![\w.-])""",
         "a Kubernetes pod's name (api-6c8f9b7d5-hlmpq, and an event's _namespace after it)"
         " is one replica's, generated with its hashes: the container and the message say"
         " what failed. Quoted, after pod= or kubectl's pod/ it is a name; after 'pod ' in"
         " prose only with a digit or a hyphen (never 'pod has', 'pod sandbox'); 'pods/exec'"
         " is a resource and its subresource (another RBAC grant), never a name"),
    Rule("user", r"""
        (?<=r\ ['"])                   # (one cheap look first: most positions fail here)
        (?:(?<=for\ user\ ')|(?<=for\ user\ ")|(?<=User\ ')|(?<=User\ "))
        [^\s'"]{1,64}(?=['"])""",
         "who was refused: the user a login failed for (password authentication failed for"
         " user 'alice', Access denied for user 'ci'@'...', Login failed for user 'sa') or a"
         " request was denied to (User \"system:serviceaccount:ci:x\" cannot ...) says who,"
         " not what failed. A role or user that is missing or required (role \"bob\" does"
         " not exist, must be member of role \"admin\") is what is missing: not masked here"),
    Rule("input", r"""
        (?=['"])                # (one cheap look first: a quoted value, else the last branch)
        (?:(?:(?<=base\ \d:\ )|(?<=base\ \d\d:\ )         # int('x', 16): Python's invalid literal
           |(?<=to\ float:\ )|(?<=to\ int:\ )|(?<=to\ complex:\ )  # could not convert ...
           |(?<=input\ string:\ )|(?<=input\ string\ )  # Java's For input string: "x"; .NET's
           |(?<=time\ data\ )|(?<=parsing\ time\ )      # strptime's; Go's time.Parse
           |(?<=Integer\(\):\ )|(?<=Float\(\):\ )|(?<=Rational\(\):\ )  # Ruby's Integer("x")
           |(?<=Complex\(\):\ )
           |(?<=Unexpected\ token\ )                    # JSON.parse: the token it met
           |(?<=Text\ )(?=['"][^'"\n]{0,256}['"]\ could\ not\ be\ parsed)  # java.time's
           |(?<=parsing\ )(?=["'][^"'\n]{0,256}["']:\ (?:invalid\ syntax|value\ out\ of\ range))
           |(?<=cannot\ parse\ )(?=["'][^"'\n]{0,256}["']\ as\ )  # Go's time.Parse
           |(?<=invalid\ character\ )(?='.{1,4}'\ (?:looking\ for|after|in\ )))  # Go's JSON
        (?:'[^'\n]{0,256}'?|"[^"\n]{0,256}"?)   # the value, quoted (Python cuts it at 200
                                                # characters: then no close quote)
        |(?:(?<=,\ )|(?<![^\s:]))"[^\n]{0,64}?"(?:\.\.\.)?(?=\ is\ not\ valid\ JSON))  # Node's
        |(?<=n\ )(?<=Unexpected\ token\ )[^\s'"]{1,4}(?=\ in\ JSON)  # snippet; older Node's""",
         "the input a parser or a conversion was given (invalid literal for int() with base 10:"
         " 'seven', could not convert string to float: 'abc', For input string: \"abc\","
         " strconv.Atoi: parsing \"abc\": invalid syntax, Unexpected token 'x', \"...\" is not"
         " valid JSON, time data '...' does not match format) is the data fed in, not the"
         " cause: what it was converted to (int, float, the format) stays. Only where the"
         " message's grammar says the value is that input: a missing file or module named in"
         " quotes is the cause, and stays"),
    Rule("classname", r"""
        \b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*            # module path (psycopg2.errors)
        \.(?=[A-Z][A-Z0-9]*[a-z])[A-Z][A-Za-z0-9]*   # a CamelCase class (UndefinedColumn)
        (?![\w.-])""",
         "kept, not masked: a dotted class name (psycopg2.errors.UndefinedColumn,"
         " urllib3.exceptions.ProtocolError) is the error's type, not a host; its module's"
         " digits are no id",
         keep=True),
    Rule("host", r"""
        (?:
          (?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\w)               # IPv4
          |\[(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]  # [IPv6]
          |(?<![\w:])(?=[0-9a-fA-F:]*\d)      # IPv6 (::1, fe80::1; MAC-like hex groups):
           (?=[0-9a-fA-F:]*::|[0-9a-fA-F]*(?::[0-9a-fA-F]*){5})   # a :: or six groups, so
           (?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])  # a line:col (3:6:) is none
          |\b(?:[A-Za-z0-9-]+\.)+             # a name ending in a top-level domain
           (?:com|net|org|edu|gov|mil|int|io|dev|app|cloud|local|localdomain|internal|lan|corp)
           (?![\w-]|\.[\w-])                 # (a sentence's full stop may follow)
          |\b(?:[A-Za-z0-9-]+\.){2,}[a-z]{2}(?![\w-]|\.[\w-])  # 3+ labels, a country last
          |\b(?=[\w.-]*\d)(?:[A-Za-z0-9-]+\.){2,}         # labels with digits
           (?![A-Z][A-Z0-9]*[a-z])[A-Za-z]{2,}(?![\w-]|\.[\w-])  # (not a CamelCase class)
          |(?=[A-Za-z][\w-]{0,62}:\d)       # a bare name in host:port position, after
           (?:(?<=tcp\ )|(?<=udp\ )|(?<=to\ )|(?<=from\ )|(?<=connect\ )|(?<=host\ )|
             (?<=Host\ )|(?<=host=)|(?<=address\ )|(?<=ECONNREFUSED\ )|(?<=ECONNRESET\ )|
             (?<=ETIMEDOUT\ )|(?<=EHOSTUNREACH\ )|(?<=\ )(?=localhost:)|
             (?<=\ on\ )|(?<=\())                # "on redis:6379", "(db:5432)"
           [A-Za-z][\w-]{0,62}(?=:\d{1,5}(?!\w|\.\w))    # tcp, to, connect, ECONNREFUSED...
          |(?<![\w.-])localhost(?![\w-]|\.\w)   # localhost, wherever it stands
          # a syslog/journald line's host, whatever its shape (web-2, prod-app-03, db):
          # before ``unit[pid]: `` (``Mar 12 11:32:52 web-2 sshd[81]: ...``) or RFC 5424's
          # ``app procid msgid [sd]`` (``<34>1 2024-...Z web-2 app 81 - [x@1] ...``), after
          # whatever stamp precedes it (a clock with or without its fraction or zone, a date,
          # journald's ``[  12.345]``) or none (a forwarder's ``web-2 sshd[81]: ...``)
          |(?:(?<=[\dZ]\ )|(?<=\]\ )|(?<![^\n]))
           (?!(?i:fatal|critical|crit|error|err|warn|warning|info|debug|trace|notice|panic
                 |severe|alert|emerg)\ )[A-Za-z][\w.-]{0,62}  # (never a level word)
           (?=\ [\w.@/-]{1,64}\[\d{1,9}\]:\ |
              \ [\w.@/-]{1,48}\ (?:\d{1,9}|-)\ (?:[\w.-]{1,32}|-)\ (?:\[|-\ ))
          # an Erlang/Elixir node's host: 'relay@web-2', "relay@ip-10-0-3-17"
          |(?<=\w@)[A-Za-z][\w-]{0,62}(?:\.[\w-]{1,62}){0,8}(?=['"])
          |(?:(?<=server\ at\ ")|(?<=host\ ")|(?<=host\ name\ ")  # where the grammar says
             |(?<=ENOTFOUND\ )|(?<=EAI_AGAIN\ )            # a bare name is a peer: libpq,
             |(?<=\w'@')|(?<=\w"@")|(?<=\w`@`)                # Node's DNS codes, MySQL's
             |(?<=host=)|(?<=hostname=)|(?<=host:\ )|(?<=hostname:\ ))  # user@host, keys
           [A-Za-z][\w-]{0,62}(?![\w.-])
        )
        (?::\d{1,5}(?!\w|\.\w))?                        # and its port""",
         "peer addresses: an IPv4 or IPv6 address, a host name (ending in a top-level domain,"
         " dotted with digits, or a bare name in host:port position after tcp/to/connect...),"
         " with its :port, are one placeholder (a bare name:port also after 'on' and inside '('):"
         " the same peer is written many ways; so is a bare"
         " name where the message's grammar makes it a peer (libpq's 'server at \"postgres\"',"
         " 'ENOTFOUND db', MySQL's 'app'@'db', 'host=db', 'hostname: db') and localhost"
         " anywhere; a syslog line's host field and an Erlang node's host ('relay@web-2')"),
    Rule("hex", r"""\b0[xX][0-9a-fA-F]+\b""",
         "hex literals and memory addresses (0x7f...) differ per process"),
    Rule("hash", r"""
        \b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,128}\b
        |(?<=[a-z0-9]:)\d{7,12}(?![\w.:])     # an image tag's short SHA, all digits or not""",
         "git SHAs and content hashes: 7+ hex digits with at least one digit and one letter;"
         " after a name's ':' (an image tag: api:3302345) 7 to 12 digits are a short SHA too"),
    Rule("path", r"""
        (?:(?<=GET\ )|(?<=PUT\ )|(?<=POST\ )|(?<=HEAD\ )|(?<=PATCH\ )|(?<=DELETE\ )
           |(?<=OPTIONS\ ))/[^\s"'?\#]*+(?:\?[^\s"']*+)?   # a request's path, even /healthz
        |(?<![\w/<])(?:[A-Za-z]:)?(?:~|\.{1,2})?      # drive, home or relative start
        (?:[/\\]+[\w.@+~-]+){2,}[/\\]?               # two or more components (// too)
        """,
         "file paths differ per checkout, temp dir and user; extraction keeps the project path;"
         " a request's path after its HTTP method (GET /healthz) is one too"),
    Rule("code", r"""
        (?:
          (?<=HTTP\ )|(?<=HTTP/1\.1\ )|(?<=HTTP/1\.0\ )|(?<=HTTP/2\ )|(?<=status\ )|
          (?<=Status\ )|(?<=STATUS\ )|(?<=status:\ )|(?<=Status:\ )|(?<=status=)|
          (?<=status\ code\ )|(?<=Status\ code\ )|(?<=status\ code:\ )|(?<=Code:\ )|
          (?<=Code=)|(?<=status_code=)|(?<=statusCode=)|(?<=statusCode:\ )|  # StatusCode: 409
          (?<=Error\ )|(?<=error:\ )|(?<=Error:\ )|
          (?<=code\ )|(?<=code:\ )|(?<=code=)|(?<=Code\ )|(?<=exit\ )|(?<=Exit\ )|
          (?<=exited\ with\ )|(?<=signal\ )|(?<=Signal\ )|(?<=signal:\ )|
          (?<=errno\ )|(?<=Errno\ )|(?<=errno=)|(?<=ERRNO\ )|(?<=curl:\ \())
        (?:[-+]?\d{1,3}|E\d{3,4})        # a number, or npm's E401 after "code"
        (?![\w]|\.\d)                     # (a sentence's full stop may follow)
        """,
         "kept, not masked: an HTTP status, exit code, signal or errno number (1-3 digits after"
         " 'HTTP', 'status', 'code', 'StatusCode:', 'exit', 'exited with', 'signal', 'errno',"
         " 'Error'; npm's"
         " E401 after 'code') is part of the error's identity (401 is not 429, exit code 1. is"
         " not exit code 137.); ports and request ids are longer",
         keep=True),
    Rule("errcode", r"""(?<=\[)MY-\d{6}(?=\])""",
         "kept, not masked: a MySQL 8 error log's error code ([MY-010926] Access denied,"
         " [MY-012345] [InnoDB]) names the message, as an errno does: no id",
         keep=True),
    Rule("duration", r"""
        \b\d+(?:(?:\.\d+)?\s?(?:ms|us|µs|ns|sec|secs|seconds?|mins?|minutes?|hours?|[smh])
                 |[dy])                                   # kubectl's ages: 33d, 2y
        (?:\ ?\d+(?:(?:\.\d+)?\s?(?:ms|us|µs|ns|sec|secs|seconds?|mins?|minutes?|hours?|[smh])
                      |[dy]))*                           # 1m 12s, 3d4h, 2y45d
        \b""",
         "durations such as 1.5s, 300 ms or 1m 12s, and ages such as kubectl's 33d or 3d4h (one"
         " placeholder, so 48s is the same) vary per run"),
    Rule("size", r"""
        \b\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|[kKMGTP]|B|bytes?)\b""",
         "data sizes such as 1.2 KB or 400 MB vary per run (unit kept inside the value)"),
    Rule("kvquoted", r"""(?<==)(?:"[^"\n]*"|'[^'\n]*')""",
         "quoted values after '=' are data, not the problem"),
    Rule("datedname", r"""
        [A-Za-z][A-Za-z0-9_]*+(?:-[A-Za-z][A-Za-z0-9_]*+)*+-(?=\d{4}[-.]\d{1,2}[-.]\d{1,2}\b)""",
         "kept, not masked: a name with a date suffix (Elasticsearch's daily index"
         " logs-2024.05.01) is its name, and its date a <timestamp>; whole, it looked like one"
         " id per day",
         keep=True),
    Rule("idtoken", r"""
        # a digit-less random id by a shape no word has (with a digit, the branches below
        # take the same tokens whole): Dart's identity hash after a name's '#'
        # (_CartPageState#edefe), a Kubernetes generated name's 5-character suffix (its
        # alphabet has no vowel: kube-api-access-lfqfh, default-token-zqqkd) after two or
        # more name parts, and 16+ letters of random case: two separate runs of two or more
        # capitals, and twice a lone lowercase letter between capitals (names made of words,
        # findByIdAndUpdate, XMLHttpRequest, make at most one of the two), or five capitals
        # each one letter apart (KqPzLmWn: four two-letter words in a row no name has)
        (?<=[A-Za-z_]\#)[0-9a-f]{5}(?![\w-])
        |\b[a-z][a-z\d]{0,30}(?:-[a-z\d]{1,30}){1,4}-(?=\d{0,4}[a-z])
         (?!(?:https|xmlns|html\d)(?![\w-]))   # (the vowel-less words of that shape)
         [b-df-hj-np-tv-xz\d]{5}(?![\w-])
        |\b(?=[A-Za-z]{16,64}(?![\w-]))
         (?:(?=[A-Za-z]{0,64}?[A-Z]{2}[a-z]{1,64}[A-Z]{2})
            (?=[A-Za-z]{0,64}?[A-Z][a-z][A-Z][A-Za-z]{0,64}?[A-Z][a-z][A-Z])
          |(?=[A-Za-z]{0,64}?(?:[A-Z][a-z]){4}[A-Z]))   # (or capitals one letter apart 5 times)
         [A-Za-z]{16,64}(?![\w-])
        |\b(?=[\w-]*\d[\w-]*\d             # two digits,
           |[\w-]*\d[\w-]*[A-Za-z_]         # or a digit before a letter,
           |[\w-]{6}                         # or six characters: names like ssh2, en0 stay,
           |(?:(?<=@)|(?<=\ on\ )|(?<=:\d\d\ ))  # or a fleet's host web-3 where a host stands
            [A-Za-z]{1,40}(?:-[A-Za-z]{1,40}){0,4}-\d(?![\w-]|\.\d))
        (?!(?i:utf|ucs|sha|latin)-\d(?![\w-]))    # (utf-8, sha-1: a standard's own number)
        # but a name, '-' and a number only (a fleet's web-3, web-12, api-2, gpt-4) keeps
        # its name: ``num`` masks the number alone, web-3 and web-12 are web-<num>, db-<num>
        # another name
        # -- except where a host stands (after '@', ' on ', a syslog stamp's seconds): there
        # the fleet's names are one (web-3 and etl-40 on a WorkerID 4242@web-3@)
        (?:(?<=@)|(?<=\ on\ )|(?<=:\d\d\ )
           |(?![A-Za-z]{1,40}(?:-[A-Za-z]{1,40}){0,4}-\d{1,9}(?![\w-]|\.\d)))
        (?=[\w-]*\d)(?=[\w-]*[A-Za-z_])[A-Za-z_\d][\w-]*\b""",
         "identifiers mixing letters and digits (blk_123, job_42_x, R02-M1) are per-object ids;"
         " so are random ids without a digit by a shape no word has (Dart's Name#edefe, a"
         " Kubernetes name's suffix kube-api-access-lfqfh, 16+ letters of random case);"
         " short names with one trailing digit (ssh2, utf8, IPv6, eth0) are kept; a name, '-'"
         " and a number (a fleet's web-3, web-12) is no id: its number alone is masked"),
    Rule("num", r"""
        (?<![\w.])[-+]?(?:v(?=\d+\.\d))?\d+
        (?:(?:\.\d+)+                                  # a dotted version, with its
           (?:-(?:alpha|beta|rc|RC|pre|preview|dev|canary|nightly|snapshot|SNAPSHOT|M)
              (?:\.?\d+)?)?                             # pre-release tag (-rc.1, -beta2)
        )?(?![\w])
        |(?<=[a-z_][a-z_][a-z_]\.)\d{1,9}(?![\w]|\.\d)  # an index in a field path""",
         "numbers: counts, sizes, ids, ports, pids, line numbers, and dotted versions whole"
         " (1.2.3, v1.2.3, 2.0.0-rc.1: another release is the same error); an index in a"
         " validation error's field path (messages.93, items.3.name) after a lowercase field"
         " of 3+ letters (a soname's libssl.so.3 is kept)"),
)

#: A pre-filter in front of the alternation, exact for this table: every rule starts at
#: the start of a word or at punctuation, and the word it starts in (up to a delimiter)
#: holds a digit or one of / \ @ : = ' " ~ . -- or is a weekday/month name (``datetext``),
#: or is a peer's name after a key or code that says so (``host``: ``host=db``, ``ENOTFOUND
#: db``, ``localhost``, a syslog line's host after its stamp or at the start), or a pod's
#: name after ``pod`` (``pod``), or an older Node's unquoted token after ``Unexpected token``
#: (``input``).
#: Failing fast elsewhere (one look-around instead of one attempt per rule) nearly doubles
#: throughput. A new rule that breaks this premise must extend the filter.
_GUARD = r"""(?<![A-Za-z0-9_])
    (?:(?=[\w/~.\\'"+-])
       (?=[^\s,;()\[\]{}<>]*?[\d/\\@:='"~.]
          |(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec))
      |(?=::|\[[0-9a-fA-F]{0,4}:)        # an IPv6 address: ::1, [2001:db8::1]
      # a bare peer name where ``host`` finds one by its context, and localhost
      # (the character before the space or = first: most words fail there)
      |(?<=[DN:]\ |[te]=)(?:(?<=ENOTFOUND\ )|(?<=EAI_AGAIN\ )|(?<=host=)|(?<=hostname=)
                            |(?<=host:\ )|(?<=hostname:\ ))
      |(?=localhost)
      |(?<=n\ )(?<=token\ )(?=\S{1,4}\ in\ JSON)   # older Node's unquoted token (``input``)
      # a digit-less random id: after an id key, or a short lowercase kind (org-, wh_)
      |(?<=[dD]=)|(?<=[dD]:\ )|(?=[a-z]{2,6}[-_][A-Za-z]{10})
      # one by its shape alone (``idtoken``): Dart's Name#edefe, a Kubernetes name's suffix,
      # 16+ letters
      |(?<=\w\#)(?=[0-9a-f]{5}(?![\w-]))|(?=[A-Za-z]{16})
      |(?=[a-z][\w-]{0,120}?-[b-df-hj-np-tv-xz\d]{5}(?![\w-]))
      |(?<=pod[\ =/"])|(?<=pods[/"])    # a pod's name (``pod``), whatever its characters
      # a syslog line's host after its stamp (or at the start), before its unit's ``[pid]``
      # or RFC 5424's procid (checked here: after a digit or "Z" most words are no host)
      |(?:(?<=[\dZ]\ )|(?<=\]\ )|(?<![^\n]))
       (?=[A-Za-z][\w.-]{0,62}\ [\w.@/-]{1,64}(?:\[\d|\ (?:\d|-\ ))))
"""

_RULE_INDEX = {rule.name: rule for rule in RULES}
_KEPT = frozenset(rule.name for rule in RULES if rule.keep)

#: Where the table masks is decided by character tests alone, and each of its tests answers
#: the same for every ASCII digit (its classes hold all ten or none; ``\b``, ``\w``, ``\S``
#: count them alike) except its literal digits: the ``0`` of ``0x`` (``hex``) and the
#: versions of ``HTTP/1.1`` (``code``). So two texts that differ only in ASCII digits, and
#: hold no digit before an x and no ``HTTP/`` (where a literal digit could match), are
#: masked at the same places by the same rules: :meth:`Normalizer.mask` keeps those places
#: under the text with its digits zeroed. Log lines repeat with new numbers (the 9,368
#: distinct texts of the stage benchmark have 2,241 such forms), and masking was the largest
#: part of a first sight. ``tests/unit/test_fingerprint_fast.py`` re-derives the premise
#: from the table's parse, so a rule with a new literal digit fails there first.
_ZEROED = str.maketrans("123456789", "000000000")
#: zeroed texts whose mask places are kept (each shorter than _BLOB_MIN: about 2 MB in all)
_PLACES_MAX = 8192


@dataclass
class Masked:
    """Result of :meth:`Normalizer.mask`: the text and what each rule replaced."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)
    values: dict[str, list[str]] = field(default_factory=dict)


class Normalizer:
    """Apply a rule table in one pass."""

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = (BLOB, *rules)
        #: rule name -> its place in the table
        self._order = {r.name: i for i, r in enumerate(self.rules)}
        # (each pattern ends on a new line: a verbose pattern's last line may be a comment,
        # which would otherwise swallow the group's close and every later rule)
        alternation = "|".join(f"(?P<{r.name}>{r.pattern}\n)" for r in rules)
        self._regex = re.compile(_GUARD + "(?:" + alternation + ")", re.VERBOSE)
        self._blob = re.compile(f"(?P<blob>{BLOB.pattern})")
        #: zeroed text -> its masked places ``((start, end, rule), ...)``; only for the
        #: built-in table, whose literal digits the checks in ``mask`` cover
        self._places: dict[str, tuple[tuple[int, int, str], ...]] | None = (
            {} if rules is RULES else None)

    def normalize(self, text: str) -> str:
        """The masked text only (fast path: no bookkeeping)."""
        if len(text) >= _BLOB_MIN:
            text = self._blob.sub(_placeholder, text)
        return self._regex.sub(_placeholder, text)

    def mask(self, text: str) -> Masked:
        """The masked text, a count per rule and the values each rule replaced."""
        places = self._places
        if places is not None and len(text) < _BLOB_MIN:
            key = text.translate(_ZEROED)
            # (a literal digit of the table could match only at an ``0x``/``0X`` of the
            # zeroed text or after ``HTTP/``: those texts, and long ones, take the full path)
            if "0x" not in key and "0X" not in key and "HTTP/" not in key:
                found = places.get(key)
                if found is None:
                    found = tuple((m.start(), m.end(), m.lastgroup or "var")
                                  for m in self._regex.finditer(text)
                                  if m.lastgroup not in _KEPT)
                    if len(places) >= _PLACES_MAX:
                        places.clear()
                    places[key] = found
                return _masked_at(text, found)
        counts: Counter[str] = Counter()
        values: dict[str, list[str]] = {}

        def replace(match: re.Match[str]) -> str:
            name = match.lastgroup or "var"
            whole = match.group(0)
            if name in _KEPT:
                return whole
            _record(counts, values, name, whole)
            return f"<{name}>"

        if len(text) >= _BLOB_MIN:
            text = self._blob.sub(replace, text)
        return Masked(self._regex.sub(replace, text), counts, values)

    def explain(self, text: str) -> list[str]:
        """One human sentence per rule that fired, e.g. ``num: 2 replaced (numbers: ...)``."""
        return self.describe(self.mask(text))

    def describe(self, masked: Masked) -> list[str]:
        """The sentences of :meth:`explain` for an already masked text."""
        lines = []
        counts = masked.counts
        order = self._order
        # (the rules that fired, in table order: a text trips one or two of some twenty)
        rules = ([self.rules[order[n]] for n in sorted(
            (n for n in counts if n in order), key=order.__getitem__)]
            if len(order) == len(self.rules) else self.rules)  # (else a name is repeated)
        for rule in rules:
            count = counts.get(rule.name, 0)
            if count:
                sample = ", ".join(repr(v) for v in masked.values[rule.name][:3])
                lines.append(f"<{rule.name}>: {count} replaced ({rule.why}); e.g. {sample}")
        return lines


def _record(counts: Counter[str], values: dict[str, list[str]], name: str, whole: str
            ) -> None:
    """Count one replacement by rule ``name`` and keep the value it replaced."""
    # (dict.get, not Counter's += : its __missing__ is a Python call per match)
    counts[name] = counts.get(name, 0) + 1
    seen = values.get(name)
    if seen is None:
        values[name] = [whole]
    else:
        seen.append(whole)


def _masked_at(text: str, places: tuple[tuple[int, int, str], ...]) -> Masked:
    """``text`` with each of ``places`` replaced by its rule's placeholder (what the
    alternation's replacement makes of the same matches)."""
    counts: Counter[str] = Counter()
    values: dict[str, list[str]] = {}
    if not places:
        return Masked(text, counts, values)
    parts = []
    at = 0
    for start, end, name in places:
        parts.append(text[at:start])
        parts.append(_PLACEHOLDERS.get(name) or f"<{name}>")
        _record(counts, values, name, text[start:end])
        at = end
    parts.append(text[at:])
    return Masked("".join(parts), counts, values)


_PLACEHOLDERS = {rule.name: f"<{rule.name}>" for rule in (BLOB, *RULES)}


def _placeholder(match: re.Match[str]) -> str:
    if match.lastgroup in _KEPT:
        return match.group(0)
    return f"<{match.lastgroup}>"


def rule(name: str) -> Rule:
    """The rule called ``name``.

    Raises:
        KeyError: no such rule.
    """
    return _RULE_INDEX[name]


DEFAULT_NORMALIZER = Normalizer()
