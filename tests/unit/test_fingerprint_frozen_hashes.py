"""A fingerprint hash may change only together with ``ALGORITHM_VERSION``.

``FROZEN`` keeps, per algorithm version, a few inputs and the fine and coarse hashes that
version gave them. The table is written by hand, never by the test: when a change to rules,
extraction or hashing alters one of these hashes, this test fails until the change also
introduces a new version (``pipeline/fingerprint/hashing.py``) with its own frozen rows.
Rows of older versions stay as the record of what those versions produced.
"""

from __future__ import annotations

import pytest

from pipeline.fingerprint import ALGORITHM_VERSION, VERSIONS, fingerprint_text

INPUTS: dict[str, str] = {
    "python": (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/main.py", line 3, in <module>\n'
        "    import yaml\n"
        "ModuleNotFoundError: No module named 'yaml'\n"
    ),
    "log_line": "2026-11-22 10:00:01 ERROR worker-3 connection to 10.0.0.7:5432 refused",
    "gcc": "main.c:5:3: error: unknown type name 'strng'",
    "git_lock": (
        "fatal: Unable to create '/srv/repo/.git/index.lock': File exists.\n"
        "Another git process seems to be running in this repository"
    ),
    "shell": "bash: line 1: black: command not found",
    # (fp-v3 on: the inputs below have rows from that version only)
    "cargo": (
        "error[E0425]: cannot find value `y` in this scope\n"
        " --> src/main.rs:2:20\n"
        "  |\n"
        "2 |     println!(\"{}\", y);\n"
        "  |                    ^ not found in this scope\n\n"
        "error: could not compile `app` (bin \"app\") due to 1 previous error\n"
    ),
    "npm_code": "npm error code E401\nnpm error Unable to authenticate\n",
    "coloured": "\x1b[31mModuleNotFoundError\x1b[0m: No module named 'yaml'",
    # (fp-v4 on: a JVM trace, whose frames are printed innermost first)
    "java": (
        "Exception in thread \"main\" java.lang.IllegalStateException: boom\n"
        "\tat com.acme.Inner.fail(Inner.java:10)\n"
        "\tat com.acme.Main.main(Main.java:40)\n"
    ),
}

#: version -> case -> (fine, coarse); hand-maintained, see the module docstring
FROZEN: dict[str, dict[str, tuple[str, str]]] = {
    "fp-v1": {
        "gcc": ("fp-v1:4aa4171ea8db7b90", "fp-v1:5579d40197e84011"),
        "git_lock": ("fp-v1:dc8aa37d7c99e091", "fp-v1:382cc97b12493db1"),
        "log_line": ("fp-v1:832ef10717b4d8e3", "fp-v1:0fe20b4feb689ddf"),
        "python": ("fp-v1:7388b4ba50a6208e", "fp-v1:a107196c992c1bad"),
        "shell": ("fp-v1:48315ec0e8be7944", "fp-v1:b626412f808b6353"),
    },
    # fp-v2: status/exit/signal/errno numbers kept (rules "code"); every hash carries the
    # new version, so all rows are new even where the normalized text is the same
    "fp-v2": {
        "gcc": ("fp-v2:fd9ea8bdd0ace3f8", "fp-v2:f01695af9e46a005"),
        "git_lock": ("fp-v2:cf15299718a5aaaa", "fp-v2:fece4f32b8c6330d"),
        "log_line": ("fp-v2:4f5a988450cd14fb", "fp-v2:620ba1bcaf01c2ee"),
        "python": ("fp-v2:c322b05062185d8f", "fp-v2:e89ec18b0cae08d4"),
        "shell": ("fp-v2:6b21dd313410ad37", "fp-v2:3755a933925ffcb3"),
    },
    # fp-v3: escape sequences stripped, two-line diagnostics, pytest collection errors,
    # npm's E401 kept, whole versions masked, CI checkout roots (see VERSIONS)
    "fp-v3": {
        "cargo": ("fp-v3:dc3aef7571e31406", "fp-v3:810ba7a6bc2da0e2"),
        "coloured": ("fp-v3:8928dc4c55c3d2a8", "fp-v3:8c603e551d20de00"),
        "gcc": ("fp-v3:87ad705c5e1e0a43", "fp-v3:2775e7907c05c9d0"),
        "git_lock": ("fp-v3:50fa49ea792ad2c2", "fp-v3:8f6308f3a89bc032"),
        "log_line": ("fp-v3:e252922155c78233", "fp-v3:83bec77241ede4a9"),
        "npm_code": ("fp-v3:5d70b366c053e1fd", "fp-v3:d5dd5f3e96eed103"),
        "python": ("fp-v3:95c9626b9bbb2c45", "fp-v3:be07789f3ba6a9e3"),
        "shell": ("fp-v3:ac7f1dbdf7b2745f", "fp-v3:3a369c8c1bb10ade"),
    },
    # fp-v4: frames outermost to innermost for every parser, Rust panics and test runners,
    # runner timestamps, peers one <host>, more volatile text masked (see VERSIONS)
    "fp-v4": {
        "cargo": ("fp-v4:ada56a015486d657", "fp-v4:5168ea461e4aa3b5"),
        "coloured": ("fp-v4:86c43e24c6712b7b", "fp-v4:242d94aadb39f1d2"),
        "gcc": ("fp-v4:5a568ceb54e2c1b5", "fp-v4:63a0855dfb64b46d"),
        "git_lock": ("fp-v4:a7ec595dda4b9530", "fp-v4:a41b688caeb554ca"),
        "java": ("fp-v4:edd7de4e25791d6f", "fp-v4:a8912f47899521e3"),
        "log_line": ("fp-v4:818144ba877d599d", "fp-v4:abd4c7303fa4a8b5"),
        "npm_code": ("fp-v4:693e32e6791ac6eb", "fp-v4:ce8b9c7482add387"),
        "python": ("fp-v4:3c051b93b76902bd", "fp-v4:355cca8a79547154"),
        "shell": ("fp-v4:7f4b1fcd0e4350ab", "fp-v4:bf1a104ee11ca03f"),
    },
    # fp-v5: coarse keys of free text say what failed, banners and diff lines never head a
    # text, node:test/cargo test read order-independently, CI runner roots, more peers and
    # hosts masked (see VERSIONS)
    "fp-v5": {
        "cargo": ("fp-v5:718e62e64856b693", "fp-v5:37a48916e8ce27fe"),
        "coloured": ("fp-v5:6ea658619cf13f65", "fp-v5:ea8a7aecc911bdb0"),
        "gcc": ("fp-v5:3b04192c1bf2adca", "fp-v5:ead7ab7840efaa8d"),
        "git_lock": ("fp-v5:b7770484748a0937", "fp-v5:55601d3a0d7d0956"),
        "java": ("fp-v5:a78f7b036f4907e4", "fp-v5:55623cd83d7ce500"),
        "log_line": ("fp-v5:45b67bab3a741066", "fp-v5:fefbaff71dadd3ec"),
        "npm_code": ("fp-v5:5b101346a3978073", "fp-v5:b45d7d76aa18b909"),
        "python": ("fp-v5:e06d07b411eaf64f", "fp-v5:0be79a930acc5600"),
        "shell": ("fp-v5:4b4b0d050b421b8e", "fp-v5:b239f71e23bcf802"),
    },
    # fp-v6: missing names in the fine key, coarse keys of structured errors say what
    # failed, one path inside the project under any checkout root, runner trailers and
    # advice never head a text, new parsers and masks (see VERSIONS)
    "fp-v6": {
        "cargo": ("fp-v6:1e836721ea89fb86", "fp-v6:5f532afd3887d00e"),
        "coloured": ("fp-v6:2a2081246cd8e559", "fp-v6:ea5e3a5cc12f4c66"),
        "gcc": ("fp-v6:438bebe48939954f", "fp-v6:028c1f7392f294dd"),
        "git_lock": ("fp-v6:72fd4bf0733cd2c5", "fp-v6:0c934eb7fadc9825"),
        "java": ("fp-v6:52fcb97780a7193d", "fp-v6:824869a132ac33b7"),
        "log_line": ("fp-v6:f5c853f107980dab", "fp-v6:67b2854fe94c4e03"),
        "npm_code": ("fp-v6:43d2394b8d792a55", "fp-v6:0f6686d8c6d1ec12"),
        "python": ("fp-v6:30c1f6bd366dc3fc", "fp-v6:d18091e7a70811a7"),
        "shell": ("fp-v6:fdb96af2b174d2f8", "fp-v6:6384ce4e08d92d27"),
    },
    # fp-v7: input values masked, report lines never head over a cause, SDK exception lines
    # attached, coarse kind words from kind labels, new parsers (UBSan, XCTest, GHC, Elixir)
    "fp-v7": {
        "cargo": ("fp-v7:ff4584a07e12a25f", "fp-v7:bff5e12f4ed8f905"),
        "coloured": ("fp-v7:6dc510fc6efe1612", "fp-v7:730435f9ee3bcd6e"),
        "gcc": ("fp-v7:1d569bcde20c9e7e", "fp-v7:f593189f8ecdc198"),
        "git_lock": ("fp-v7:86164196d03acc47", "fp-v7:73c05ad02b29144f"),
        "java": ("fp-v7:536be298793c8881", "fp-v7:6fe4273223d6f2d2"),
        "log_line": ("fp-v7:ffb6231729f463b4", "fp-v7:626b230aa2740d6e"),
        "npm_code": ("fp-v7:934e3e87465ebc6d", "fp-v7:96c2e9628e3b760b"),
        "python": ("fp-v7:bedef367fdd7fe96", "fp-v7:f7343e0e9034e9e7"),
        "shell": ("fp-v7:2b48388cd63bce30", "fp-v7:40d5200b162ed7b6"),
    },
    # fp-v8: per-line log prefixes read past, Spring Boot/.NET ILogger/ANR parsed, verdict
    # and setting lines never head, bundle hashes cut, coarse names of bare failures
    "fp-v8": {
        "cargo": ("fp-v8:797f81e04a5c710d", "fp-v8:ac1d72535b611158"),
        "coloured": ("fp-v8:0e37a4933d1a8338", "fp-v8:9a23514deee147ad"),
        "gcc": ("fp-v8:4e1a3ae0dd910891", "fp-v8:11138dc83047f085"),
        "git_lock": ("fp-v8:0fbd0f97b7abcc42", "fp-v8:368e9813ae186024"),
        "java": ("fp-v8:44331fac4ba1f6af", "fp-v8:abb7d97e3ad1285d"),
        "log_line": ("fp-v8:63b340f5e505e97c", "fp-v8:74039f76586c1f94"),
        "npm_code": ("fp-v8:13cd1a992e821eec", "fp-v8:ee30f4ecf136e063"),
        "python": ("fp-v8:ae1da473f7dd9a78", "fp-v8:dc208312a7582c46"),
        "shell": ("fp-v8:84e6d1051c01474b", "fp-v8:82ff404f45e6eac3"),
    },
}


def test_the_current_version_has_a_frozen_table() -> None:
    assert ALGORITHM_VERSION in VERSIONS
    assert ALGORITHM_VERSION in FROZEN, (
        f"no frozen hashes for {ALGORITHM_VERSION}: add FROZEN[{ALGORITHM_VERSION!r}] with the "
        "hashes this version gives INPUTS (print them with fingerprint_text) in this file"
    )
    assert set(FROZEN[ALGORITHM_VERSION]) == set(INPUTS)


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_hashes_change_only_with_the_version(case: str) -> None:
    fp = fingerprint_text(INPUTS[case])
    frozen = FROZEN.get(ALGORITHM_VERSION, {})
    assert case in frozen, f"no frozen row for {case!r} under {ALGORITHM_VERSION}"
    assert (fp.fine, fp.coarse) == frozen[case], (
        f"the {ALGORITHM_VERSION} hashes of {case!r} changed while ALGORITHM_VERSION did not: "
        "bump the version (new VERSIONS entry, new snapshots, new FROZEN rows) instead"
    )
