"""The pre-flight's reading of package.json (pipeline.validate.declared): which installs it
judges, how an import names a package, and every "not sure" that must not refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.validate.declared import installs_declared, package_name, undeclared_module


@pytest.mark.parametrize(("argv", "tool"), [
    (["npm", "install"], "npm"), (["npm", "ci"], "npm"), (["/usr/bin/npm", "i"], "npm"),
    (["npm", "install", "--no-audit"], "npm"), (["yarn"], "yarn"),
    (["yarn", "install", "--frozen-lockfile"], "yarn"), (["pnpm", "install"], "pnpm"),
    (["bun", "install"], "bun"),
    (["npm", "install", "lodash"], None), (["bun", "add", "zod"], None),
    (["npm", "run", "build"], None), (["pip", "install"], None), ([], None),
])
def test_installs_declared(argv: list[str], tool: str | None) -> None:
    assert installs_declared(argv) == tool


@pytest.mark.parametrize(("module", "name"), [
    ("lodash", "lodash"), ("lodash/fp", "lodash"), ("@a/b", "@a/b"), ("@a/b/c/d", "@a/b"),
    ("left-pad.js", "left-pad.js"), ("@/components", None), ("node:fs", None),
    ("./x", None), ("", None),
])
def test_package_name(module: str, name: str | None) -> None:
    assert package_name(module) == name


def repo(tmp_path: Path, manifest: dict[str, object] | None, **files: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        (tmp_path / "package.json").write_text(json.dumps(manifest))
    for name, text in files.items():
        (tmp_path / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name.replace("__", "/")).write_text(text)
    return tmp_path


def test_an_undeclared_package_is_refused_with_what_to_do(tmp_path: Path) -> None:
    root = repo(tmp_path, {"name": "app", "dependencies": {"express": "^4"}},
                **{"package-lock.json": '{"packages": {"node_modules/express": {}}}'})
    why = undeclared_module("@acme/x/sub", root, root, "Error: Cannot find module '@acme/x/sub'")
    assert why.startswith("module @acme/x is not declared in package.json")
    assert "`npm install @acme/x`" in why and "fix the import" in why
    assert "`bun add left-padzz`" in undeclared_module("left-padzz", root, root, "", "bun")


@pytest.mark.parametrize(("module", "manifest", "files", "text"), [
    ("express/lib/router", {"dependencies": {"express": "^4"}}, {}, ""),
    ("jest", {"devDependencies": {"jest": "^29"}}, {}, ""),
    ("app", {"name": "app"}, {}, ""),  # the package's own name
    ("fs/promises", {}, {}, ""),  # a Node built-in
    ("@/components", {}, {}, ""),  # an alias, not a package name
    ("x", None, {}, ""),  # no package.json: nothing to compare with
    ("x", {"workspaces": ["packages/*"]}, {}, ""),
    ("x", {}, {"pnpm-workspace.yaml": "packages: ['p/*']\n"}, ""),
    ("debug", {}, {"package-lock.json": '{"packages": {"node_modules/debug": {}}}'}, ""),
    ("debug", {}, {"yarn.lock": 'debug@^4.1.0:\n  version "4.3.4"\n'}, ""),
    ("debug", {}, {}, "Error: Cannot find module 'debug'\nRequire stack:\n"
     "- /app/node_modules/express/lib/application.js"),
])
def test_when_not_sure_it_does_not_refuse(tmp_path: Path, module: str,
                                          manifest: dict[str, object] | None,
                                          files: dict[str, str], text: str) -> None:
    root = repo(tmp_path, manifest, **files)
    assert undeclared_module(module, root, root, text) == ""


def test_a_package_json_up_the_tree_counts(tmp_path: Path) -> None:
    root = repo(tmp_path, {"dependencies": {"lodash": "1"}},
                sub__package_json="{}", **{"yarn.lock": 'lodash@1:\n  version "1.0.0"\n'})
    (root / "sub" / "package_json").rename(root / "sub" / "package.json")
    assert undeclared_module("lodash", root, root / "sub", "") == ""
    assert "not declared" in undeclared_module("zod", root, root / "sub", "")


def test_an_unreadable_or_huge_manifest_does_not_refuse(tmp_path: Path) -> None:
    root = repo(tmp_path, None, **{"package.json": "{not json"})
    assert undeclared_module("x", root, root, "") == ""
    (root / "package.json").write_text('{"a": "' + "x" * 1_100_000 + '"}')
    assert undeclared_module("x", root, root, "") == ""


LOCK = {"package-lock.json": '{"packages": {"node_modules/express": {}}}'}


@pytest.mark.parametrize(("module", "files"), [
    ("debug", {}),  # no lockfile: express may bring debug (a transitive dependency)
    ("debug", {**LOCK, "bun.lockb": "\0binary"}),  # a lockfile heal cannot read
    ("utils/date", {**LOCK, "tsconfig.json": '{\n  // paths\n  "compilerOptions": {"paths": '
                    '{"utils/*": ["./src/utils/*"]},},\n}'}),
    ("components/Button", {**LOCK, "jsconfig.json": '{"compilerOptions": {"baseUrl": "src"}}',
                           "src__components__Button.js": ""}),
    ("shared", {**LOCK, "vite.config.ts": "export default {resolve: {alias: {shared: '/s'}}}"}),
])
def test_a_transitive_dependency_or_the_project_s_own_alias_is_not_refused(
        tmp_path: Path, module: str, files: dict[str, str]) -> None:
    root = repo(tmp_path, {"name": "app", "dependencies": {"express": "4"}}, **files)
    assert undeclared_module(module, root, root, "") == ""
    # the same names with no alias and a lockfile that does not name them are refused
    bare = repo(tmp_path / "bare", {"name": "app", "dependencies": {"express": "4"}}, **LOCK)
    assert "not declared" in undeclared_module(module, bare, bare, "")
    # and with no dependency at all, nothing an install brings can be it
    empty = repo(tmp_path / "empty", {"name": "app", "dependencies": {}})
    assert "declares no dependency" in undeclared_module("debug", empty, empty, "")
