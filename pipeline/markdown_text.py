"""Untrusted text (event text, names people or packs gave) in Markdown that a person reads
where it renders (a CI job summary, a pull-request comment, ``heal report --format md``):
shown literally, never as HTML, a link, an image, emphasis, a mention or a reference to an
issue or a commit."""

from __future__ import annotations

import re

from pipeline.console import visible

#: ASCII punctuation Markdown reads as inline syntax in a table cell (emphasis, code, links,
#: images, strikethrough, escapes, the cell's end, headings and lists at a line's start):
#: backslash-escaped in prose
_MARKDOWN = frozenset("\\`*_{}[]()#+!|~")
#: what a backslash does not neutralise: written as entities
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: a zero-width space: after an ``@`` it keeps the text and stops a mention's ping
#: (``@octocat``); before a ``|`` it stops a backslash in the text from escaping the
#: backslash that escapes the ``|`` (``\\|`` ends a table cell)
_ZWSP = "\u200b"
#: what makes GitHub turn bare text into a link (its autolink extension: a scheme's ``://``,
#: ``www.``, ``mailto:``/``xmpp:``) ...
_AUTOLINK = ("://", "www.", "mailto:", "xmpp:")
#: ... or into a reference to an issue, a pull request or a commit, which also puts a
#: cross-reference on that issue's timeline (someone else's: ``torvalds/linux#1``): ``#123``
#: (``owner/repo#123`` too), ``GH-123``, a commit SHA of 7 to 40 hex digits (bare,
#: ``user@sha``, ``owner/repo@sha``). Simple classes and bounded repeats: linear in the word
_REFERENCE = re.compile(
    r"#[0-9]|(?<![0-9a-z])gh-[0-9]|(?<![0-9a-z])[0-9a-f]{7,40}(?![0-9a-z])", re.IGNORECASE)


def links(word: str) -> bool:
    """True when GitHub would turn ``word`` (no spaces) into a link or a reference: such a
    word of prose is shown as code instead, which GitHub never links."""
    return any(marker in word.lower() for marker in _AUTOLINK) or bool(
        _REFERENCE.search(word))


def one_line(value: object) -> str:
    """Untrusted text on one line, its control characters and bidirectional controls shown
    as ``\\xNN`` / ``\\uNNNN``: a U+202E in an error would otherwise reorder what is shown."""
    return visible(" ".join(str(value).splitlines()))


def code_span(value: object, table: bool = True) -> str:
    """Untrusted text (an error, a file name, a command) as a code span: nothing in it renders
    as HTML, a link, an image or a mention. Its backtick fence is longer than any run of
    backticks in the text; in a ``table`` cell ``|`` is escaped (GitHub splits the cells
    before it reads code spans)."""
    text = one_line(value)
    if not text:
        return ""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    if table:
        text = text.replace("\\|", "\\" + _ZWSP + "|").replace("|", "\\|")
    # a space on each side is dropped by the reader: needed when the text starts or ends
    # with a backtick, kept when it starts and ends with a space
    pad = " " if "`" in (text[0], text[-1]) or text[0] == text[-1] == " " else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def prose_cell(value: object, table: bool = True) -> str:
    """Untrusted prose in a table cell (or a heading), on one line: HTML escaped, Markdown's
    inline syntax backslash-escaped, mentions broken, and each word GitHub would turn into a
    link or a reference (:func:`links`: ``https://evil.example/x``, ``www.evil.example``,
    ``torvalds/linux#1``, ``GH-12``, a commit SHA) put in a code span, which it never links:
    readable, copyable, not a link."""
    words = []
    for word in one_line(value).split(" "):
        if links(word):
            # the sentence's punctuation around the word stays outside its code span (as
            # GitHub leaves it outside a link): copying `heal/fp-1` gives the name, not
            # `heal/fp-1;`
            start = len(word) - len(word.lstrip(_OPENING))
            core = _core(word[start:])
            if core and links(core):
                words.append(_escaped(word[:start]) + code_span(core, table=table)
                             + _escaped(word[start + len(core):]))
                continue
            words.append(code_span(word, table=table))
            continue
        words.append(_escaped(word))
    return " ".join(words)


#: punctuation of the sentence before and after a word shown as code
_OPENING = "(\"'"
_CLOSING = ".,;:!?)\"'"


def _core(word: str) -> str:
    """``word`` without the sentence's punctuation after it, but a closing ``)`` that matches
    an ``(`` inside stays (GitHub's autolink rule: ``https://ex.com/a_(b)``, whole, in
    ``(see https://ex.com/a_(b)).``). Linear: the parentheses are counted once."""
    end = len(word)
    opening, closing = word.count("("), word.count(")")
    while end and word[end - 1] in _CLOSING:
        if word[end - 1] == ")":
            if closing <= opening:
                break  # matched: part of the word
            closing -= 1
        end -= 1
    return word[:end]


def _escaped(word: str) -> str:
    """One word of prose with Markdown's inline syntax and HTML neutralised, mentions broken."""
    out = []
    for char in word:
        if char in _MARKDOWN:
            out.append("\\" + char)
        elif char in _HTML:
            out.append(_HTML[char])
        elif char == "@":
            out.append("@" + _ZWSP)
        else:
            out.append(char)
    return "".join(out)
