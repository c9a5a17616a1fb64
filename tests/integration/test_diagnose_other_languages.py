"""`heal diagnose --json` (a subprocess) on what node, gcc, javac and java print today: a
node:test assertion is a logic bug, a JavaScript SyntaxError is not Python's, a missing file
of the project is not a missing package, a JVM out of memory gets JVM advice, a missing header
or Java package is the environment, and no rendered message has an unfilled placeholder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NODE, GCC, JAVAC, JAVA = (shutil.which(t) for t in ("node", "gcc", "javac", "java"))


def output(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C", "NO_COLOR": "1"})
    assert proc.returncode != 0, f"{argv} unexpectedly succeeded"
    return proc.stdout + proc.stderr


def diagnose(text: str, tmp_path: Path, *extra: str, semantic: bool = False
             ) -> dict[str, Any]:
    path = tmp_path / "out.txt"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "diagnose", "--json", "--offline", *(() if semantic else ("--no-semantic",)),
         *extra, str(path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HEAL_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def message(data: dict[str, Any]) -> str:
    return str(data["fix"]["rendered"]["message"])


def no_placeholder_nouns(text: str) -> bool:
    return not any(f"the {w}" in text for w in ("file line", "line:", "message", "the line"))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_node_test_assertion_failure_never_gets_a_moderate_fix(tmp_path: Path) -> None:
    # Given node --test (spec report) with one failing assertion and a test file whose
    # package is missing (which alone would get npm install, MODERATE)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.test.js").write_text(
        "const t=require('node:test'),a=require('node:assert');"
        "t('adds',()=>a.strictEqual(2+2,5));\n")
    (tmp_path / "test" / "b.test.js").write_text("require('left-pad-not-installed');\n")
    text = output([str(NODE), "--test", "--test-reporter=spec"], tmp_path)
    # When heal diagnoses it
    data = diagnose(text, tmp_path)
    # Then the assertion makes it a logic bug: no SAFE/MODERATE fix
    assert data["fix"] is None
    assert "logic bug (AssertionError" in data["reason"]
    # And diagnose, which writes nothing, does not claim it was queued
    assert "heal run would queue it for review" in data["reason"]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_javascript_syntax_error_is_not_python_and_names_file_and_line(
        tmp_path: Path) -> None:
    (tmp_path / "bad.js").write_text("function broken( {\n  return 1;\n}\n")
    data = diagnose(output([str(NODE), "bad.js"], tmp_path), tmp_path)
    assert data["match"]["pattern_id"] == "js.syntax_error"
    text = message(data)
    assert "Python" not in text and "bad.js line 2" in text
    assert no_placeholder_nouns(text)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_missing_file_of_the_project_never_gets_npm_install(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name":"n","version":"1.0.0"}\n')
    (tmp_path / "app.js").write_text("require('./lib/helpers');\n")
    (tmp_path / "m.mjs").write_text("import './nope.mjs';\n")
    for argv in ([str(NODE), "app.js"], [str(NODE), "m.mjs"]):
        text = output(argv, tmp_path)
        # tier 2 too (no --no-semantic): the rule for a path answers before it
        for semantic in (False, True):
            data = diagnose(text, tmp_path, "--mode", "auto-safe", semantic=semantic)
            assert data["match"]["pattern_id"] == "node.local_module_missing", argv
            assert data["fix"]["kind"] == "escalate"
            assert "npm install cannot create it" in message(data)
    # while a missing package still gets npm install
    text = output([str(NODE), "-e", "require('left-pad-not-installed')"], tmp_path)
    assert diagnose(text, tmp_path)["fix"]["rendered"]["argv"] == ["npm", "install"]


@pytest.mark.skipif(JAVAC is None or JAVA is None, reason="a JDK is not installed")
def test_java_out_of_memory_gets_jvm_advice(tmp_path: Path) -> None:
    (tmp_path / "O.java").write_text(
        "public class O { public static void main(String[] a) { long[][] x = new long[1000]"
        "[]; for (int i = 0; i < 1000; i++) x[i] = new long[1000000]; } }\n")
    subprocess.run([str(JAVAC), "O.java"], cwd=tmp_path, check=True, timeout=120)
    data = diagnose(output([str(JAVA), "-Xmx16m", "O"], tmp_path), tmp_path)
    assert data["match"]["pattern_id"] == "jvm.out_of_memory"
    text = message(data)
    assert "-Xmx" in text and "Java heap space" in text and "NODE_OPTIONS" not in text


@pytest.mark.skipif(GCC is None or JAVAC is None, reason="gcc or javac is not installed")
def test_a_missing_header_or_java_package_is_the_environment(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text('#include "nosuch_zz.h"\nint main(void) { return 0; }\n')
    (tmp_path / "A.java").write_text("import com.nosuchzz.X;\npublic class A {}\n")
    for argv, what in (([str(GCC), "a.c"], "header nosuch_zz.h"),
                       ([str(JAVAC), "A.java"], "package com.nosuchzz")):
        data = diagnose(output(argv, tmp_path), tmp_path)
        assert data["match"]["pattern_id"] == "build.missing_dependency"
        text = message(data)
        assert what in text and "line 1" in text and "Edit the code there" not in text


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_node_test_failure_nested_at_any_depth_is_a_logic_bug(tmp_path: Path) -> None:
    # Given node --test's TAP report of an assertion five describe() blocks deep (its YAML
    # block indented 22 spaces; QA s16d R6), in a log where a step before it missed a
    # package (which alone gets npm install, MODERATE)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "deep.test.js").write_text(
        "const {describe,it}=require('node:test'),a=require('node:assert');"
        "describe('a',()=>{describe('b',()=>{describe('c',()=>{describe('d',()=>{"
        "describe('e',()=>{it('sums',()=>a.deepStrictEqual([1],[2]));});});});});});\n")
    tap = output([str(NODE), "--test", "--test-reporter=tap"], tmp_path)
    assert "                      name: 'AssertionError'" in tap, tap
    text = output([str(NODE), "-e", "require('left-pad-not-installed')"], tmp_path) + tap
    # When heal diagnoses it, Then it is a logic bug: no SAFE/MODERATE fix
    data = diagnose(text, tmp_path)
    assert data["fix"] is None, data
    assert "logic bug (AssertionError" in data["reason"]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_windows_or_bun_module_path_is_the_project_s_and_node_modules_is_a_package(
        tmp_path: Path) -> None:
    # Given a relative path written Windows' way, and Bun's wording (QA s16d R9)
    windows = ("Error: Cannot find module '..\\shared\\config'\nRequire stack:\n"
               "- D:\\work\\svc\\index.js\n    at Module._resolveFilename "
               "(node:internal/modules/cjs/loader:1207:15)\n")
    bun = 'error: Cannot find module "./util/format" from "/srv/svc/index.ts"\n\nBun v1.2.0\n'
    for text, module in ((windows, "..\\shared\\config"), (bun, "./util/format")):
        data = diagnose(text, tmp_path, "--mode", "auto-safe")
        assert data["match"]["pattern_id"] == "node.local_module_missing", data
        assert f"own module {module} does not exist" in message(data)
    # while a file under node_modules (a package not installed) is not the project's own
    (tmp_path / "node_modules").mkdir()
    missing = tmp_path / "node_modules" / "typescript" / "bin" / "tsc"
    data = diagnose(output([str(NODE), str(missing)], tmp_path), tmp_path)
    assert data["match"]["pattern_id"] == "node.modules_missing", data
    assert data["fix"]["rendered"]["argv"] == ["npm", "install"]


def test_clang_and_msvc_missing_headers_are_the_environment(tmp_path: Path) -> None:
    # Given clang's and MSVC's words for a missing header (QA s16d R10; gcc's is tested above)
    clang = ("lib/io.c:3:10: fatal error: 'zstd.h' file not found\n#include <zstd.h>\n"
             "         ^~~~~~~~\n1 error generated.\n")
    msvc = ("D:\\build\\lib\\io.cpp(3): fatal error C1083: Cannot open include file: "
            "'zstd.h': No such file or directory\n")
    for text, tool in ((clang, "cc"), (msvc, "msvc")):
        data = diagnose(text, tmp_path)
        assert data["match"]["pattern_id"] == "build.missing_dependency", data
        text_ = message(data)
        assert f"{tool} cannot find the header zstd.h" in text_ and "line 3" in text_
        assert "Edit the code there" not in text_


def test_a_python_syntax_error_with_an_indented_at_line_is_python_s(tmp_path: Path) -> None:
    # Given a Python SyntaxError a template engine follows with "  at line N of ..." (QA s16d
    # R10): not a JavaScript stack frame
    text = 'SyntaxError: unexpected EOF while parsing\n  at line 12 of macro "nav"\n'
    data = diagnose(text, tmp_path)
    assert data["match"]["pattern_id"] == "python.syntax_error", data


def test_jvm_memory_advice_only_for_a_thrown_heap_error_and_thread_limits_get_their_own(
        tmp_path: Path) -> None:
    # Given a JUnit failure that only names the class (QA s16d R10)
    junit = ("org.opentest4j.AssertionFailedError: expected: <java.lang.OutOfMemoryError> "
             "but was: <java.io.IOException>\n\tat org.acme.PoolTest.fails(PoolTest.java:9)\n")
    data = diagnose(junit, tmp_path)
    assert data["match"]["pattern_id"] not in ("jvm.out_of_memory", "proc.oom_killed"), data
    # and a JVM that cannot create another thread
    threads = ('Exception in thread "pool-3-thread-7" java.lang.OutOfMemoryError: unable to '
               "create new native thread\n\tat java.base/java.lang.Thread.start0(Native Method)\n")
    data = diagnose(threads, tmp_path)
    assert data["match"]["pattern_id"] == "jvm.thread_limit", data
    text = message(data)
    assert "ulimit -u" in text and "do not raise -Xmx" in text
