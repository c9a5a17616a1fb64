"""Every parser gives its frames outermost to innermost (fp-v4). JVM, Node and Go traces print
the failing frame first, and the fingerprinter keys on the last frames and the last function,
so until fp-v4 those traces were keyed by their outermost frames: two different failures
reached from the same entry point shared the coarse key's function (``main``) and, with deep
stacks, the fine key's frames."""

from __future__ import annotations

from pipeline.fingerprint import fingerprint_text

DEEP = 8  # more frames than the key holds (MAX_FRAMES)


def _java(fails_in: str) -> str:
    callers = "".join(f"\tat com.acme.Layer{i}.call(Layer{i}.java:{10 + i})\n"
                      for i in range(DEEP))
    return ("Exception in thread \"main\" java.lang.IllegalStateException: bad state\n"
            f"\tat com.acme.{fails_in}(Work.java:5)\n{callers}"
            "\tat com.acme.Main.main(Main.java:40)\n")


def _node(fails_in: str) -> str:
    callers = "".join(f"    at layer{i} (/srv/app/layer{i}.js:{10 + i}:3)\n" for i in range(DEEP))
    return ("TypeError: Cannot read properties of undefined (reading 'id')\n"
            f"    at {fails_in} (/srv/app/work.js:5:9)\n{callers}"
            "    at main (/srv/app/index.js:40:1)\n")


def _go(fails_in: str) -> str:
    callers = "".join(f"main.layer{i}(...)\n\t/src/app/layer{i}.go:{10 + i} +0x1d\n"
                      for i in range(DEEP))
    return ("panic: runtime error: invalid memory address or nil pointer dereference\n\n"
            "goroutine 1 [running]:\n"
            f"main.{fails_in}(...)\n\t/src/app/work.go:5 +0x1d\n{callers}"
            "main.main()\n\t/src/app/main.go:40 +0x25\n"
            "exit status 2\n")


def test_traces_printed_innermost_first_are_keyed_by_their_failing_frames() -> None:
    for make, kind in ((_java, "java"), (_node, "node"), (_go, "go")):
        one, two = fingerprint_text(make("parse")), fingerprint_text(make("render"))
        assert one.extraction is not None and one.extraction.kind == kind
        # the failing function is the coarse key's and the frames' innermost
        assert one.extraction.frames[-1].function.endswith("parse"), (kind, one.extraction)
        assert one.coarse != two.coarse, kind
        assert one.fine != two.fine, kind
        # the parameters name the failing frame, not the entry point
        assert one.params["file"].endswith(("Work.java", "work.js", "work.go")), one.params
        assert one.params["line"] == 5, (kind, one.params)


def test_only_the_panicking_goroutine_is_the_go_errors_stack() -> None:
    other = "\ngoroutine 7 [chan receive]:\nmain.idle()\n\t/src/app/idle.go:3 +0x1d\n"
    alone, dumped = fingerprint_text(_go("parse")), fingerprint_text(_go("parse") + other)
    assert alone.fine == dumped.fine and alone.coarse == dumped.coarse
