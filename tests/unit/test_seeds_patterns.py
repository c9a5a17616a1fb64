"""The seeded universal patterns against real tool outputs (tests/fixtures/errors/<id>/*.txt,
captured from python, pip, git, ruff, mypy, node, npm, curl...); logic bugs
(tests/fixtures/errors/_logic_bugs) must never receive a SAFE or MODERATE fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.lookup.catalog import load_catalog, parse_pattern
from pipeline.lookup.guard import logic_bug
from pipeline.lookup.service import Lookup
from storage.cache import LocalCache

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
REQUIRED = sorted(
    ['proc.oom_killed', 'node.modules_missing', 'proc.command_not_found',
    'whitespace.trailing', 'python.module_not_found', 'git.index_lock', 'types.missing_stubs',
    'auth.expired_credentials', 'net.rate_limited', 'node.missing_script', 'net.timeout',
    'tls.cert_verify_failed', 'test.flaky', 'proc.port_in_use', 'git.non_fast_forward',
    'deps.externally_managed', 'git.local_changes_overwritten', 'python.stale_bytecode',
    'lint.ruff_fixable', 'fs.no_space', 'db.connection_lost', 'format.ruff_format',
    'python.syntax_error', 'fs.permission_denied_exec', 'precommit.files_modified',
    'net.dns_failure', 'deps.lockfile_outdated', 'python.indentation_error',
    'python.import_name_error', 'net.connection_refused', 'git.merge_conflict',
    'imports.unsorted', 'deps.pip_no_matching_distribution', 'format.black',
    'build.compile_error', 'cargo.unknown_feature', 'node.engine_mismatch',
    'deps.maven_unresolved', 'deps.go_sum_missing', 'deps.package_not_found',
    'deps.resolution_conflict', 'build.unknown_task', 'apt.lock_held', 'apt.package_not_found',
    'php.extension_missing', 'ruby.gems_not_installed', 'docker.daemon_unreachable',
    'docker.buildx_missing']
)
ESCALATE = ("git.merge_conflict", "python.syntax_error", "tls.cert_verify_failed",
            "build.compile_error", "deps.package_not_found", "deps.resolution_conflict",
            "build.unknown_task", "apt.package_not_found", "php.extension_missing",
            "docker.daemon_unreachable", "docker.buildx_missing")

CASES = sorted(p for p in FIXTURES.glob("*/*.txt") if not p.parent.name.startswith("_"))
LOGIC = sorted(FIXTURES.glob("_logic_bugs/*.txt"))


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Lookup:
    cache = LocalCache(tmp_path_factory.mktemp("cache") / "c.sqlite3")
    return Lookup(load_catalog(), cache, db=None, embedder=None)


def test_every_required_pattern_is_seeded_with_fixtures() -> None:
    catalog = load_catalog()
    assert set(REQUIRED) <= set(catalog.patterns)
    for pid in REQUIRED:
        assert list((FIXTURES / pid).glob("*.txt")), f"no real output captured for {pid}"


def test_no_mechanical_guess_where_none_is_safe() -> None:
    catalog = load_catalog()
    for pid in ESCALATE:
        fix = catalog.patterns[pid].fix
        assert fix.kind.value == "escalate" and fix.category.value == "RISKY"
        assert fix.explanation


def test_top_pattern_is_right_on_real_outputs(lookup: Lookup) -> None:
    wrong = []
    for path in CASES:
        result = lookup.lookup(error_id=path.name, text=path.read_text(), fine="", coarse="",
                               record=False)
        if result.pattern_id != path.parent.name:
            wrong.append(f"{path.parent.name}/{path.name} -> {result.pattern_id}")
    accuracy = 1 - len(wrong) / len(CASES)
    assert accuracy >= 0.95, wrong
    assert not wrong, wrong  # today every captured output is right


@pytest.mark.parametrize("path", LOGIC, ids=lambda p: p.name)
def test_logic_bugs_never_get_a_safe_or_moderate_fix(lookup: Lookup, path: Path) -> None:
    result = lookup.lookup(error_id=path.name, text=path.read_text(), fine="", coarse="",
                           record=False)
    assert result.fix is None or result.fix["category"] == "RISKY"


@pytest.mark.parametrize("path", LOGIC, ids=lambda p: p.name)
def test_the_guard_recognises_every_captured_logic_bug(path: Path) -> None:
    # (node:test's TAP and spec reports included, whatever a pattern would match)
    assert logic_bug(path.read_text()) is not None


def test_the_guard_recognises_other_runners_assertion_failures() -> None:
    assert logic_bug("thread 'main' panicked at 'assertion failed: `(left == right)`\n"
                     "  left: `4`,\n right: `5`', src/main.rs:2:5\n") == "assertion"
    assert logic_bug("1) CalcTest::testAdd\nFailed asserting that 4 matches expected 5.\n"
                     ) == "test failure"
    # a Java package that does not exist is the environment (the classpath), not logic
    assert logic_bug("App.java:1: error: package com.nosuch does not exist\n") is None


def test_guard_refuses_a_moderate_fix_when_the_error_is_a_logic_bug(lookup: Lookup) -> None:
    text = ("E   ConnectionRefusedError: [Errno 111] Connection refused\n"
            "FAILED tests/test_api.py::test_totals - AssertionError: assert 5 == 6\n")
    result = lookup.lookup(error_id="g", text=text, fine="fp-guard", coarse="", record=False)
    assert result.pattern_id is None and "logic bug" in result.reason
    assert lookup.cache.pattern_for("fp-guard", "fine") is None  # nothing learned from it


def test_fixes_render_from_real_outputs() -> None:
    catalog = load_catalog()
    text = (FIXTURES / "types.missing_stubs" / "mypy.txt").read_text()
    pattern, params = catalog.detect(text) or (None, {})
    assert pattern is not None
    from pipeline.fixes.render import render_fix

    fix = render_fix(pattern.fix, params)
    assert fix["rendered"]["argv"] == ["python", "-m", "pip", "install", "types-requests"]
    text = (FIXTURES / "whitespace.trailing" / "git_diff_check.txt").read_text()
    pattern, params = catalog.detect(text) or (None, {})
    assert pattern is not None and pattern.id == "whitespace.trailing"
    diff = render_fix(pattern.fix, params)["rendered"]["diff"]
    assert diff == "--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-x = 1   \n+x = 1\n"


def test_invalid_seed_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="category"):
        parse_pattern({"id": "x.y", "category": "HARMLESS", "fix": {"kind": "escalate",
                                                                     "message": "m"}})
    with pytest.raises(ConfigError, match="undeclared"):
        parse_pattern({"id": "x.y", "category": "SAFE",
                       "fix": {"kind": "command", "argv": ["rm", "{path}"]}})
    with pytest.raises(ConfigError, match="pattern or allowed"):
        parse_pattern({"id": "x.y", "category": "SAFE", "params": {"p": {"type": "str"}},
                       "fix": {"kind": "command", "argv": ["echo", "{p}"]}})


#: what the real tools' outputs must yield (fixture -> parameters the fix or message uses)
PARAMS = {
    "deps.lockfile_outdated/yarn_frozen.txt": {"tool": "yarn"},
    "deps.lockfile_outdated/pnpm12_frozen.txt": {"tool": "pnpm"},
    "deps.lockfile_outdated/bundler_frozen.txt": {"tool": "bundler"},
    "deps.lockfile_outdated/composer_install.txt": {"tool": "composer", "package": "acme/lib"},
    "deps.package_not_found/npm_e404.txt": {"tool": "npm",
                                            "package": "left-pad-nonexistent-zz9@1.0.0"},
    "deps.package_not_found/npm_etarget.txt": {"tool": "npm", "package": "left-pad@99.0.0"},
    "deps.package_not_found/yarn_404.txt": {"tool": "yarn", "package": "left-pad-nonexistent-zz9"},
    "deps.package_not_found/pnpm_fetch_404.txt": {"tool": "pnpm",
                                                  "package": "left-pad-nonexistent-zz9"},
    "deps.package_not_found/pnpm_no_matching_version.txt": {"tool": "pnpm",
                                                            "package": "left-pad@99.0.0"},
    "deps.package_not_found/bundler_requirement.txt": {"tool": "bundler",
                                                       "package": "minitest (~> 9.0)"},
    "deps.package_not_found/composer.txt": {"tool": "composer", "package": "nonexistent/pkg-zz9"},
    "deps.resolution_conflict/npm_eresolve.txt": {"package": "react-dom@18.2.0",
                                                  "peer": "react", "requirement": "^18.2.0"},
    "deps.resolution_conflict/pnpm_strict_peers.txt": {"tool": "pnpm", "peer": "react",
                                                       "package": "react-dom@18.2.0",
                                                       "requirement": "^18.2.0"},
    "deps.lockfile_outdated/yarn4_immutable.txt": {"tool": "yarn-berry"},
    "node.missing_script/yarn4_run.txt": {"script": "nope"},
    "node.missing_script/pnpm_run.txt": {"script": "nope"},
    "node.missing_script/pnpm_unknown_command.txt": {"script": "nope"},
    "build.unknown_task/gradle.txt": {"tool": "gradle", "task": "nope", "project": "g1"},
    "build.unknown_task/composer.txt": {"tool": "composer", "task": "nope"},
    "build.compile_error/gradle_javac.txt": {"tool": "javac", "line": "1"},
    "deps.maven_unresolved/gradle_offline.txt": {"artifact": "com.example:nonexistent-lib:1.0"},
    "net.dns_failure/gradle.txt": {"host": "repo.maven.apache.org"},
    "net.dns_failure/bundler.txt": {"host": "index.rubygems.org"},
    "net.dns_failure/pnpm_registry.txt": {"host": "registry.nonexistent.invalid"},
    "net.dns_failure/composer_packagist.txt": {"host": "repo.packagist.org"},
    "apt.lock_held/apt_get.txt": {"lock_path": "/var/lib/dpkg/lock-frontend", "pid": "2093",
                                  "holder": "apt-get"},
    "apt.package_not_found/version_not_found.txt": {"package": "bash", "version": "0.0.1-zz"},
    "php.extension_missing/composer.txt": {"extension": "mongodb"},
    "ruby.gems_not_installed/bundle_exec.txt": {"gem": "minitest-5.99.0"},
    "docker.daemon_unreachable/docker_pull.txt": {"host": "unix:///var/run/docker.sock"},
    "tls.cert_verify_failed/curl_expired.txt": {"reason": "certificate has expired"},
    "tls.cert_verify_failed/urllib_expired.txt": {"reason": "certificate has expired"},
    "tls.cert_verify_failed/pnpm_expired.txt": {"reason": "certificate expired"},
    "tls.cert_verify_failed/npm_self_signed.txt": {"reason": "self-signed certificate"},
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_other_ecosystems_outputs_keep_their_parameters(name: str) -> None:
    found = load_catalog().detect((FIXTURES / name).read_text())
    assert found is not None and found[0].id == name.split("/")[0]
    assert {k: found[1].get(k) for k in PARAMS[name]} == PARAMS[name]


def test_lockfile_fixes_use_each_tools_own_command() -> None:
    from pipeline.fixes.render import render_fix

    catalog = load_catalog()
    argv = {}
    for name in ("yarn_frozen", "pnpm12_frozen", "bundler_frozen", "composer_install"):
        pattern, params = catalog.detect(
            (FIXTURES / "deps.lockfile_outdated" / f"{name}.txt").read_text()) or (None, {})
        assert pattern is not None
        argv[name] = render_fix(pattern.fix, params)["rendered"]["argv"]
    assert argv["yarn_frozen"] == ["yarn", "install"]  # yarn 1 has no --mode flag
    assert argv["pnpm12_frozen"] == ["pnpm", "install", "--lockfile-only"]
    assert argv["bundler_frozen"][-2:] == ["bundle", "lock"]
    assert argv["composer_install"] == ["composer", "update", "acme/lib", "--no-install",
                                        "--no-scripts", "--no-plugins"]


@pytest.mark.parametrize("path", LOGIC, ids=lambda p: p.name)
def test_every_logic_bug_fixture_is_recognised_by_the_guard(path: Path) -> None:
    from pipeline.lookup.guard import logic_bug

    assert logic_bug(path.read_text()) is not None


def test_guard_stays_fast_on_hostile_lines() -> None:
    import time

    from pipeline.lookup.guard import logic_bug

    start = time.perf_counter()
    for text in (("a" * 299 + ":1:in `" + "x" * 499 + "\n") * 200, ":" + "a:" * 50000,
                 ("  1) " * 20000), "PHP Fatal error:" + " " * 100000):
        logic_bug(text)
    assert time.perf_counter() - start < 2.0
