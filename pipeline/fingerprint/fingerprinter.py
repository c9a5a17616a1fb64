"""Fingerprinter: extraction + normalization + versioned hashes + template clustering."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.fingerprint.cluster import (
    DEFAULT_CONFIG,
    WILDCARD,
    MinerConfig,
    TemplateMiner,
    TemplateStoreLike,
    Tokens,
    render,
    tokenize,
)
from pipeline.fingerprint.extract import extract, readable
from pipeline.fingerprint.hashing import ALGORITHM_VERSION, stable_hash
from pipeline.fingerprint.model import Extraction, Fingerprint, Frame
from pipeline.fingerprint.params import extract_params
from pipeline.fingerprint.paths import key_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER, Masked, Normalizer
from pipeline.fingerprint.status import EXIT_KIND, event_status, exit_status, keyed_on_status

#: innermost project frames that enter the fine fingerprint (deeper ones are call paths
#: that vary with the caller, not with the problem)
MAX_FRAMES = 5
_UNSTRUCTURED = ("log", "text")


class Fingerprinter:
    """Fingerprints raw error texts; with a ``store``, templates are mined across events.

    Raises (from ``fingerprint``):
        StreamUnavailable: a Redis-backed template store cannot be reached.
    """

    def __init__(
        self,
        store: TemplateStoreLike | None = None,
        normalizer: Normalizer = DEFAULT_NORMALIZER,
        config: MinerConfig = DEFAULT_CONFIG,
    ) -> None:
        self.normalizer = normalizer
        self.miner = TemplateMiner(store, config) if store is not None else None
        #: by (text, repo, status): the text itself is the key (a str caches its hash; a digest of
        #: it cost a hash of every event's text) and is what ANALYSIS_CACHE_CHARS counts
        self._analyses: OrderedDict[tuple[str, str, str], _Analysis] = OrderedDict()
        #: characters of the texts behind the cached analyses (the cache's memory bound)
        self._cached_chars = 0
        #: the last prepared batch's analyses by (text, repo)
        self._batch: dict[tuple[str, str, str], _Analysis] = {}
        #: the last prepared batch's fingerprints by (text, repo): its templates are fixed
        #: by ``prepare``, so ``fingerprint`` of an event of the batch is one lookup
        self._finished: dict[tuple[str, str, str], Fingerprint] = {}
        #: (kind, error class, masked message, frame key, top function) -> what
        #: ``_shaped`` makes of it: texts that differ only in masked values (log lines with
        #: new numbers) share it; cleared when full
        self._shapes: dict[tuple[str, str, str, str, str, str, str],
                           tuple[Tokens, str, str]] = {}

    def fingerprint(self, text: str, repo: str = "", status: str = "") -> Fingerprint:
        """The fingerprint of ``text``; ``status``: how the command ended
        (:func:`pipeline.fingerprint.status.exit_status`), the key of a text that says nothing
        of what failed. A repeated text with the same mined template gets the same (frozen)
        object back: treat its ``params`` as read-only."""
        done = self._finished.get((text, repo, status))
        if done is not None:
            return done
        return self._fingerprint(text, repo, status)

    def _fingerprint(self, text: str, repo: str, status: str = "") -> Fingerprint:
        return self._finish(self._analyze(text, repo, status))

    def _finish(self, analysis: _Analysis) -> Fingerprint:
        tokens = analysis.tokens
        mined = self.miner.template(tokens) if self.miner is not None else tokens
        if mined is analysis.last_mined:  # the very template of last time: its fingerprint
            return analysis.last
        template = render(mined)
        found = analysis.finished.get(template)
        if found is None:
            found = analysis.finish(template)
        analysis.last_mined, analysis.last = mined, found
        return found

    def prepare(self, items: Sequence[tuple[str, str] | tuple[str, str, str]]) -> None:
        """Before fingerprinting a batch of (text, repo[, status]): mine all their templates against
        the store at once (one round trip, see ``TemplateMiner.prepare``).

        Raises:
            StreamUnavailable: a Redis-backed template store cannot be reached.
        """
        self._finished = {}
        batch: dict[tuple[str, str, str], _Analysis] = {}
        for item in items:
            key = item if len(item) == 3 else (item[0], item[1], "")
            if key not in batch:
                batch[key] = self._analyze(*key)
        self._batch = batch
        if self.miner is not None:
            self.miner.prepare([analysis.tokens for analysis in batch.values()])
        # (what ``fingerprint`` would answer for each, now that the templates are fixed)
        self._finished = {item: self._finish(analysis) for item, analysis in batch.items()}

    def _analyze(self, text: str, repo: str, status: str = "") -> _Analysis:
        """Everything but the mined template, a pure function of (text, repo, status):
        cached, since a stage sees the same texts again and again (retries, flapping jobs,
        log storms)."""
        key = (text, repo, status)
        found = self._batch.get(key)
        if found is not None:
            return found
        found = self._analyses.get(key)
        if found is not None:
            try:  # noqa: SIM105 - a suppress() context per event is measurable here
                self._analyses.move_to_end(key)
            except KeyError:  # dropped by another thread meanwhile
                pass
            return found
        found = self._compute(text, repo, status)
        self._analyses[key] = found
        self._cached_chars += len(text)
        while (len(self._analyses) > ANALYSIS_CACHE
               or self._cached_chars > ANALYSIS_CACHE_CHARS) and len(self._analyses) > 1:
            try:  # noqa: SIM105 - a suppress() context per event is measurable here
                _, dropped = self._analyses.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break
            self._cached_chars -= dropped.chars
        return found

    def _compute(self, text: str, repo: str, status: str = "") -> _Analysis:
        chars = len(text)
        # colours and the CI runner's timestamps are not the error: a coloured, a stamped
        # and a plain copy are one error (the parameters are read from the clean text too)
        text = readable(text)
        # a text with no line that says what failed is keyed on how the command ended
        extraction = keyed_on_status(extract(text, repo), status, text)
        params = extract_params(text, extraction)
        # (whitespace runs to one space, ends stripped: ``re``'s ``\s`` is ``str.isspace``,
        # so this is ``re.sub(r"\s+", " ", m).strip()`` at a third of its cost)
        masked, fine_text = mask_message(" ".join(extraction.message.split()), params,
                                         self.normalizer)
        # the error class is structure, not data: it is never masked
        prefix = f"{extraction.error_type}: " if extraction.error_type else ""
        if extraction.kind == EXIT_KIND and extraction.message.endswith(extraction.error_type):
            prefix = ""  # ``killed by SIGSEGV`` names its class already
        frames = extraction.project_frames()[-MAX_FRAMES:]
        # (a file by its path in the named repository, else by its last components: one file
        # under any guessed checkout root, see paths.py)
        frame_key = "|".join(f"{key_path(f.file, repo)}:{f.function}" for f in frames)
        top = coarse_where(extraction.kind, frames)
        chain = chain_key(extraction, params, self.normalizer) if extraction.chain else ""
        # (the fine key's message, "" when it is the masked one: no missing name in it)
        named = fine_text if fine_text != masked.text else ""
        shape = (extraction.kind, extraction.error_type, masked.text, frame_key, top, chain,
                 named)
        found = self._shapes.get(shape)
        if found is None:
            found = _shaped(*shape)
            if len(masked.text) + len(named) <= SHAPE_CHARS:
                if len(self._shapes) >= SHAPE_CACHE:
                    self._shapes.clear()
                self._shapes[shape] = found
        tokens, fine, coarse = found
        hints = tuple(self.normalizer.describe(masked)) if masked.counts else ()
        # (the constructor's fields, in order, without its frozen setattr per field)
        base = _new(Fingerprint)
        base.__dict__.update(
            fine=fine, coarse=coarse, version=ALGORITHM_VERSION, template="",
            normalized=prefix + masked.text, params=params, extraction=extraction, hints=hints)
        return _Analysis(base, tokens, frame_key, chars)


def _shaped(kind: str, error_type: str, masked: str, frame_key: str, top: str,
            chain: str = "", named: str = "") -> tuple[Tokens, str, str]:
    """The tokens to mine and the fine and coarse fingerprints of a masked message: the same
    for every text that masks to it (with the same kind, error class, frames and chain).
    ``named``: the fine key's message when it differs, the names of what is missing put
    back (see :func:`mask_message`): the normalized headline, the mined template and the
    coarse key keep them masked, so a rule derived from the headline and a fix's template
    fit every missing module."""
    prefix = f"{error_type}: " if error_type else ""
    tokens = tokenize(prefix + masked)
    head = coarse_head(kind, error_type, masked, None if prefix else tokens)
    coarse = stable_hash("coarse", kind, head, top)
    fine_text = named or masked
    fine = (stable_hash("fine", kind, error_type, fine_text, frame_key, chain) if chain
            else stable_hash("fine", kind, error_type, fine_text, frame_key))
    return tokens, fine, coarse


#: chained exceptions that enter the fine key, and the characters of each one's message
CHAIN_KEY_LINKS = 5
CHAIN_KEY_CHARS = 500


def chain_key(extraction: Extraction, params: dict[str, object], normalizer: Normalizer) -> str:
    """The other exceptions of a chain as the fine key holds them: each one's class and
    masked message (its names masked as the headline's), at most CHAIN_KEY_LINKS of them.
    An error is its whole chain: `DatabaseUnavailable('db down')` raised from a failed
    password and from a missing database are two errors needing two fixes (fp-v4)."""
    parts = []
    for error_type, message in extraction.chain[:CHAIN_KEY_LINKS]:
        _, text = mask_message(" ".join(message[:CHAIN_KEY_CHARS].split()), params, normalizer)
        parts.append(f"{error_type}: {text}")
    return "\x1e".join(parts)


def coarse_head(kind: str, error_type: str, masked: str, tokens: Tokens | None = None) -> str:
    """What stands for the error class in the coarse key: the class followed by the first
    CLASS_WORDS words of its message that say what kind of failure it is (:func:`kind_words`;
    fp-v6); for a log line or plain text (whose level or nothing is no error class) and a
    compiler diagnostic without a code (whose class is only its severity) the first
    KIND_WORDS of them, or its names, or its masked message (else every ERROR line of every
    program, every code-less gcc, GHC, Go and swiftc error, would share one).
    ``tokens``: ``tokenize(masked)`` when already at hand."""
    if kind not in _UNSTRUCTURED and not (kind == "compiler" and error_type in _SEVERITIES):
        # (a structured error's class with the first words of its message that say what
        # kind of failure it is: a class alone said nothing for Node's ``Error``, a Rust
        # ``panic`` or ``OutOfMemoryError``, so ENOENT and EACCES, heap space and Metaspace,
        # every frame-less panic, were one; a message without such a word adds nothing)
        words = kind_words(tokens if tokens is not None else tokenize(masked), limit=CLASS_WORDS,
                           known=class_words(error_type))
        return " ".join([error_type, *words]).strip()
    own = tokens if tokens is not None else tokenize(masked)
    # (a log line keyed on the exception it is, ``openai.RateLimitError: Error code: 429``,
    # has that class for its level: its words say nothing more; a level word is no class)
    known = frozenset() if error_type.isupper() else class_words(error_type)
    words = kind_words(own, known=known)
    if not words or _OUTCOMES.issuperset(words):
        # (no word, or only that something failed, ``Failed OrderFlow_Completes [2 s]``:
        # what failed is in its names; ``Status: Failed`` has none and keeps its word)
        words = kind_words(own, names=True) or words
    if not words:
        # nothing but masked values, quotes and marks (``==<num>==ABORTING``, ``+++ b/x.py``):
        # the masked message, as the fine key holds it, never one constant shared by all
        # (no word of it is a plain word or a name, so it is never another text's words)
        return f"{error_type} {masked}".strip()
    return " ".join([error_type, *words]).strip()


#: words that only say that something failed, not what kind of failure it was: a free text
#: whose kind words are all these is keyed on its names too (a test runner's ``Failed
#: TestName``, ``FAILED TestName``, ``Error in TestName``)
_OUTCOMES = frozenset(("failed", "failure", "fail", "failing", "error", "errored", "errors",
                       "fatal", "crashed", "aborted"))
#: the classes of a diagnostic that printed no code (its severity only)
_SEVERITIES = frozenset(("error", "fatal error", "warning", "note"))
#: words of the coarse key that say what kind of failure a free text is
KIND_WORDS = 6
#: of those, the words kept after a structured error's class (which says the rest): fewer,
#: so a line a tool or runner printed after the message moves the key less often
CLASS_WORDS = 3
#: words that say nothing of the failure's kind (left out of the coarse key's words)
_FUNCTION_WORDS = frozenset((
    "a", "an", "the", "to", "of", "in", "on", "at", "for", "from", "with", "by", "as", "is",
    "are", "was", "be", "and", "or", "it", "this", "that", "line", "did", "you", "mean",
    # (a null or boolean value of a JSON or dict body, and a request's courtesy)
    "none", "null", "true", "false", "please"))
_QUOTES = {"'": "'", '"': '"', "`": "`", "\u2018": "\u2019", "\u201c": "\u201d"}
#: what ends a quoted span's last token after its closing quote
_AFTER_QUOTE = ".,:;!?()[]{}"
_TRIM = _AFTER_QUOTE + "<>=*#'\"`\u2018\u2019\u201c\u201d"
#: an identifier kind_words takes when asked for names (``KeyError``, ``app.errors.Down``)
_NAME = re.compile(r"[A-Za-z_][\w$]{0,100}(?:(?:\.|::)[A-Za-z_][\w$]{0,100}){0,20}")


def kind_words(tokens: Tokens, names: bool = False, limit: int = KIND_WORDS,
               known: frozenset[str] = frozenset()) -> list[str]:
    """The first KIND_WORDS words of a message's tokens that say what kind of failure it is:
    plain words (letters and inner hyphens, lowercased: ``heap-use-after-free``), never a
    masked value or a token holding one (``redis:<*>``, ``web-<*>``: part of a value), a
    quoted name (``'pending_bytes'``, ``\u2018Int\u2019``), a dotted, snake_case or
    camelCase identifier (``server.NewRouter``, ``MyApp.Cache``) or a function word. So
    two failures of one kind about different names share them, and two kinds that open
    alike ("Failed to query..." and "Failed to build...", "connection to server ... failed:
    Connection refused" and "... password authentication failed") do not. ``names``: take
    identifiers too, as written (for a message with no plain word, such as a lone
    ``KeyError: 'DATABASE_URL'``: its class is its kind).

    Structure is not kind either (fp-v7): a key of a JSON or dict body (``{'error':``,
    ``"message":``) and a null or boolean value are left out, and so are the words in
    ``known`` (the error class's own words: ``Error`` in ``openai.RateLimitError: Error
    code: 429`` says nothing the class did not). Two things a message names *are* its kind:
    the value a kind label introduces (``'code': 'insufficient_quota'``, ``Failed with result
    'oom-kill'``, ``reason=Evicted``: :data:`_KIND_LABELS`; the label itself then gives way
    to it), and the class of an exception it reports (``... failed
    openai.InternalServerError: ...``)."""
    reader = _KindReader(names, limit, known)
    for token in tokens[:_KIND_TOKENS]:
        if reader.read(token):
            break
    return reader.result()


class _KindReader:
    """:func:`kind_words`' walk over a message's tokens, one token at a time."""

    __slots__ = ("names", "limit", "known", "words", "kinds", "closing", "message", "label",
                 "reported")

    def __init__(self, names: bool, limit: int, known: frozenset[str]) -> None:
        self.names, self.limit, self.known = names, limit, known
        self.words: list[str] = []
        self.kinds: list[str] = []  # (label values and reported classes: they go first)
        self.closing = ""  # (the quote that ends the quoted span being skipped)
        self.message = ""  # (the quote that ends a body's message being read as words)
        self.label = ""  # (a label just read: ":" a kind label, "msg" a message key,
        #                  "said" a reported message's ``message:``)
        self.reported = False  # (reading a reported message: its words are kinds)

    def result(self) -> list[str]:
        if self.label == "said":
            self.words.append("message")
        elif self.label not in ("", ":", "msg"):
            self.words.append(self.label)
        return (self.kinds + self.words)[:self.limit]

    def read(self, token: str) -> bool:
        """Take in one token; True once enough kinds are known (nothing after counts)."""
        after_label, self.label = self.label, ""
        if self.closing:  # inside a quoted span: names, not the kind of failure
            if token.rstrip(_AFTER_QUOTE).endswith(self.closing):
                self.closing = ""
            return False
        if self.message:  # inside a body's message: its words are the message's
            if token.rstrip(_AFTER_QUOTE).endswith(self.message):
                token, self.message = token.rstrip(_AFTER_QUOTE)[:-1], ""
            quoted, inner = _quoted(token)
        else:
            self.reported = False
            quoted, inner = _quoted(token)
            if after_label in ("msg", "said") and quoted in ("span", "value"):
                # (``'message': 'Rate limit reached ...'``: the words of the message; a
                # message a wrapper reports, ``returned message: "..."``, is the cause: its
                # words go first, as a reported exception class does)
                self.message = _QUOTES[token[0]] if quoted == "span" else ""
                self.reported = after_label == "said"
                token, quoted = token[1:].rstrip(_AFTER_QUOTE).rstrip(_QUOTES[token[0]]), ""
            elif after_label == "said":
                self.words.append("message")  # (a plain word after all)
        if after_label not in ("", ":", "msg", "said") and quoted != "value":
            self.words.append(after_label)  # (a plain word that was no label after all)
        if quoted == "span":
            self.closing = _QUOTES[token[0]]  # (the span goes on over the next tokens)
        elif quoted == "key":  # ``'code':``, ``{"message":``: structure, or a label
            lowered = inner.lower()
            self.label = (":" if lowered in _KIND_LABELS
                          else "msg" if lowered in _MESSAGE_KEYS else "")
        elif quoted == "value":  # a quoted name, or a kind label's value (``'oom-kill'``)
            if after_label:
                _take_value(inner, self.kinds, self.known)
        else:
            self._plain(token)
        return len(self.kinds) >= self.limit

    def _plain(self, token: str) -> None:
        """Take in a token that is not quoted."""
        word = token.strip(_TRIM)
        lowered = word.lower()
        if WILDCARD not in token and _REPORTED_CLASS.fullmatch(token):
            if token[:-1] not in self.kinds:
                self.kinds.append(token[:-1])  # (an exception the message reports, as written)
            self.known = self.known | class_words(token[:-1])  # (its message's ``Error code``)
        elif lowered == "message" and token == "message:" and not self.message:
            self.label = "said"  # (a quoted message may follow: see read)
        elif lowered in _KIND_LABELS and token.rstrip(":=") == word:
            # (``code:``, ``code=`` announce a value; a plain ``result`` may: see the next)
            self.label = ":" if token.endswith((":", "=")) else lowered
        elif "=" in word and word.split("=", 1)[0].lower() in _KIND_LABELS:
            _take_value(word.split("=", 1)[1].strip(_TRIM), self.kinds, self.known)
        elif (self.names and WILDCARD not in token and lowered not in _FUNCTION_WORDS
                and lowered not in self.known and _NAME.fullmatch(word)):
            self.words.append(word)
        elif not (WILDCARD in token or not word.replace("-", "").isalpha() or not word.isascii()
                  or lowered in _FUNCTION_WORDS or lowered in self.known
                  or (any(c.isupper() for c in word[1:]) and any(c.islower() for c in word))):
            (self.kinds if self.reported else self.words).append(lowered)


def _quoted(token: str) -> tuple[str, str]:
    """What a quoted ``token`` is to :func:`kind_words`, and what it quotes: ``span`` (it
    opens a span over the next tokens), ``key`` (a body's key: ``'code':``, ``{"error":``),
    ``value`` (one quoted token: ``'oom-kill'``,), or ``""`` (not quoted)."""
    opener = token[:1]
    if opener in _QUOTES:
        rest = token[1:].rstrip(_AFTER_QUOTE)
        if not rest.endswith(_QUOTES[opener]):
            return "span", ""
        if token.rstrip(_AFTER_KEY).endswith(":"):
            return "key", rest[:-1]
        return "value", rest[:-1]
    if opener in _OPENERS:
        key = _BODY_KEY.fullmatch(token)
        if key is not None:
            return "key", key.group("key")
    return "", ""


#: words that name the kind of the value after them (``'type': 'rate_limit_error'``,
#: ``'code': 'insufficient_quota'``, ``Failed with result 'oom-kill'``, ``reason=Evicted``,
#: ``status: UNAVAILABLE``): the value is the failure's kind, the label only announces it
_KIND_LABELS = frozenset(("type", "code", "reason", "result", "status", "kind", "errno",
                          "error_type", "error_code"))
#: what may follow a body's key after its colon (``{'error': {'code': ...``: none; kept for
#: a key the tokenizer joined to its bracket)
_AFTER_KEY = ",;!?()[]{}"
#: brackets before a body's first key (``{'error':``, ``[{"type":``)
_OPENERS = "{[("
_BODY_KEY = re.compile(r"""[{\[(]{1,8}(?P<q>['"])(?P<key>[\w-]{1,64})(?P=q):""")
#: a body's keys whose value is its message, read as the message's words
#: (``{"msg": "No package matching ..."}``, ``'message': 'prompt is too long'``)
_MESSAGE_KEYS = frozenset(("msg", "message", "detail", "error_message", "description"))
#: the tokens of a message kind_words reads (a long body's label values come late; bounded)
_KIND_TOKENS = 400
#: a label's value as the coarse key takes it (``insufficient_quota``, ``oom-kill``,
#: ``UNAVAILABLE``): one identifier-like token with a letter, lowercased
_VALUE = re.compile(r"[A-Za-z][\w.-]{0,63}")
#: an exception class a message reports, with its colon (``openai.InternalServerError:``,
#: ``Stripe::CardError:``, ``TimeoutException:``): its name ends like an exception class's
_REPORTED_CLASS = re.compile(
    r"(?:[A-Za-z_][\w$]{0,100}(?:\.|::)){0,20}[A-Z][\w$]{0,100}"
    r"(?:Error|Exception|Failure|Fault):")


def _take_value(value: str, words: list[str], known: frozenset[str]) -> None:
    """Append a kind label's ``value`` to ``words`` when it is a kind (see :data:`_VALUE`),
    not a masked value, not one of ``known`` nor already taken."""
    lowered = value.lower()
    if (WILDCARD not in value and _VALUE.fullmatch(value) and lowered not in words
            and lowered not in known and lowered not in _FUNCTION_WORDS):
        words.append(lowered)


def class_words(error_type: str) -> frozenset[str]:
    """The lowercased words of an error class's last name (``openai.RateLimitError``:
    rate, limit, error): a message's words that repeat them say nothing more."""
    last = re.split(r"\.|::", error_type)[-1]
    return frozenset(w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", last[:200]))


def coarse_where(kind: str, frames: Sequence[Frame]) -> str:
    """Where the coarse key says the error happened: the innermost project frame's function;
    for a compiler diagnostic (which has none) its language, as its file's extension."""
    if not frames:
        return ""
    if kind == EXIT_KIND:  # the program that died (pipeline.fingerprint.status)
        return frames[-1].file
    if kind == "compiler" and not frames[-1].function:
        return _language(frames[-1].file)
    return frames[-1].function


def _language(file: str) -> str:
    """A diagnostic's language as its file's extension (``.c``, ``.hs``, ``.go``)."""
    _, dot, extension = file.rpartition(".")
    return f".{extension}" if dot and "/" not in extension else ""


class _Analysis:
    """What a text's fingerprint is made of before its template is mined (the fingerprint
    without template, the tokens to mine, the frame key), and the finished fingerprints by
    template (a repeated text usually gets the template it got last time)."""

    __slots__ = ("base", "tokens", "frame_key", "chars", "finished", "last_mined", "last")

    def __init__(self, base: Fingerprint, tokens: Tokens, frame_key: str, chars: int) -> None:
        self.base = base
        self.tokens = tokens
        self.frame_key = frame_key
        #: length of the analysed text (what this entry costs the cache)
        self.chars = chars
        self.finished: dict[str, Fingerprint] = {}
        #: the mined template tuple last given and its fingerprint: the miner hands out the
        #: same tuple while a group is unchanged, so an identity check skips rendering it
        self.last_mined: Tokens | None = None
        self.last: Fingerprint = base

    def finish(self, template: str) -> Fingerprint:
        base = self.base
        assert base.extraction is not None
        params = dict(base.params)
        params["cluster"] = stable_hash("cluster", base.extraction.kind, template,
                                        self.frame_key)
        # ``dataclasses.replace(base, template=..., params=...)`` without its __init__ (the
        # frozen setattr per field): the same fields, two of them new
        found = _new(Fingerprint)
        found.__dict__.update(vars(base), template=template, params=params)
        if len(self.finished) >= _FINISHED_PER_TEXT:  # a text whose template keeps moving
            self.finished.clear()
        self.finished[template] = found
        return found


_new = object.__new__

#: finished fingerprints kept per analysed text (one per template it was given)
_FINISHED_PER_TEXT = 4
#: analyses kept per Fingerprinter (least recently used dropped first): at most this many,
#: of texts of at most this many characters in all (about 3 KB of memory per short log
#: line; long texts count by their length, so a storm of 64 KB tracebacks stays bounded)
ANALYSIS_CACHE = 32768
ANALYSIS_CACHE_CHARS = 16 * 1024 * 1024
#: masked messages whose tokens and hashes are kept, and the longest kept (so the shapes
#: hold at most ~8 MB of text)
SHAPE_CACHE = 8192
SHAPE_CHARS = 1024


#: extracted values that are masked in the message by name (they live on in ``params``):
#: the names of what is missing (a module, package, command, imported name, a database role
#: that does not exist or is required) and where the error happened (a host, a path denied)
MASKED_PARAMS = ("module", "package", "command", "host", "permission_path", "import_name",
                 "role")
#: of those, the names of what is missing: the fine key keeps them (``No module named
#: 'requests'`` and ``'yaml'`` are two causes with two fixes, fp-v6; so are ``role "ci"`` and
#: ``role "app"`` that do not exist), the coarse key masks them (one kind of failure); a
#: host and a path stay masked in both (where, not what), and so does who was refused (the
#: ``user`` rule: one failed login for any user is one error)
NAMED_PARAMS = frozenset(("module", "package", "command", "import_name", "role"))


def mask_message(message: str, params: dict[str, Any], normalizer: Normalizer
                 ) -> tuple[Masked, str]:
    """A message masked for the keys: the coarse key's (every extracted name masked as
    ``<name>``, then the rule table) and the fine key's text (the same, with the names of
    what is missing put back: as written, the rule table having masked what follows them,
    ``left-pad@<num>``; a name given as a path, ``./lib/util``, masked as the table masks a
    path)."""
    named: list[str] = []
    pre = _mask_params(message, params, named)
    masked = normalizer.mask(pre)
    text = masked.text
    for name in named:
        value = params[name]
        assert isinstance(value, str)
        if value[:1] in _PATH_START or value[1:3] in (":/", ":\\"):
            value = normalizer.mask(value).text
        text = text.replace(f"<{name}>", value)
    return masked, text


#: how a name given as a path starts (``./lib/x``, ``/app/x``, ``~/bin/x``, ``C:\x``)
_PATH_START = frozenset("./\\~")


def _mask_params(message: str, params: dict[str, Any], named: list[str] | None = None
                 ) -> str:
    """``message`` with the extracted values of MASKED_PARAMS in it masked as ``<name>``;
    ``named``: gets the names of NAMED_PARAMS masked."""
    for name in MASKED_PARAMS:
        value = params.get(name)
        if (isinstance(value, str) and len(value) > 1 and value in message
                and f"<{name}>" not in message):
            message = message.replace(value, f"<{name}>")
            if named is not None and name in NAMED_PARAMS:
                named.append(name)
    if "<package>/" in message or "<package>-" in message:
        # a subpath imported from a package (``lodash/fp``, ``@babel/core/lib/x``) and a
        # release of it (Bundler's ``nokogiri-1.16.0-x86_64-linux``) are the package (the
        # param is its name): one package to install, one key
        message = _SUBPATH.sub("<package>", message)
    if "<host>:" in message:
        # a peer's port belongs to its address: the rules mask ``10.0.0.5:5432`` and
        # ``postgres:5432`` whole, so ``db.internal:5432`` is ``<host>`` too, not <host>:<num>
        message = _HOST_PORT.sub("<host>", message)
    return message


_HOST_PORT = re.compile(r"<host>:\d{1,5}(?!\w|\.\w)")
_SUBPATH = re.compile(r"<package>(?:/[^\s'\"`]*|-\d[\w.-]*)")


_STATELESS = Fingerprinter()


def fingerprint_text(
    text: str, repo: str = "", fingerprinter: Fingerprinter | None = None, *,
    exit_code: int | None = None, signal: str | None = "", command: Sequence[str] = (),
) -> Fingerprint:
    """Fingerprint one raw error text (stateless unless a ``fingerprinter`` with a store
    is given; the template is then mined across every event that store has seen).

    ``exit_code`` / ``signal``: how the command ended, when known (an event's ``exit_code``
    and ``tags.signal``), and ``command`` the argv it ran (its program is part of that key);
    they key a text that holds no line saying what failed
    (:mod:`pipeline.fingerprint.status`). Every caller holding an event uses
    :func:`fingerprint_event`, so all of them agree with the fingerprint stage."""
    return (fingerprinter or _STATELESS).fingerprint(text, repo,
                                                exit_status(exit_code, signal, command))


def fingerprint_event(event: ErrorLike, fingerprinter: Fingerprinter | None = None
                      ) -> Fingerprint:
    """The fingerprint of an error event as the fingerprint stage computes it: its text,
    repository, exit code and signal (the one function every caller with an event uses)."""
    return (fingerprinter or _STATELESS).fingerprint(event.text, event.repo.path,
                                                     event_status(event))


class _RepoLike(Protocol):
    @property
    def path(self) -> str: ...


class ErrorLike(Protocol):
    """What :func:`fingerprint_event` reads of an ``ErrorEvent``."""

    @property
    def text(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def tags(self) -> dict[str, Any]: ...
    @property
    def repo(self) -> _RepoLike: ...


def describe(extraction: Extraction) -> str:
    """One line for humans: ``python ValueError: bad value (app/models.py:save)``."""
    frames = extraction.project_frames()
    where = f" ({frames[-1].file}:{frames[-1].function})" if frames else ""
    return f"{extraction.kind} {extraction.error_type}: {extraction.message}{where}".strip()
