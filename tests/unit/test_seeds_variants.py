# ruff: noqa: E501 (error texts are kept verbatim, one per line)
"""Common variants of the seeded errors (other tool versions, CI wrappers, other clients),
written in the formats those tools print; complements the captured fixtures."""

from __future__ import annotations

import pytest

from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.service import Lookup
from storage.cache import LocalCache

VARIANTS = [
("python.module_not_found", "ImportError while importing test module '/app/tests/test_x.py'.\nHint: make sure your test modules/packages have valid Python names.\nTraceback:\ntests/test_x.py:1: in <module>\n    import pandas\nE   ModuleNotFoundError: No module named 'pandas'"),
("python.import_name_error", "ImportError: cannot import name 'Markup' from 'jinja2' (/usr/lib/python3/dist-packages/jinja2/__init__.py)"),
("python.syntax_error", '  File "app.py", line 12\n    if x = 1:\n         ^\nSyntaxError: invalid syntax. Maybe you meant \'==\' or \':=\' instead of \'=\'?'),
("python.indentation_error", 'Sorry: IndentationError: unexpected indent (app.py, line 4)'),
("python.stale_bytecode", "ImportError: bad magic number in 'config': b'\\x03\\xf3\\r\\n'"),
("format.ruff_format", "Would reformat: src/app/main.py\nWould reformat: src/app/util.py\n2 files would be reformatted, 14 files already formatted"),
("format.black", "would reformat /src/app.py\n\nOh no! 💥 💔 💥\n1 file would be reformatted."),
("lint.ruff_fixable", "app.py:1:8: F401 [*] `json` imported but unused\napp.py:5:1: E711 Comparison to `None` should be `cond is None`\nFound 2 errors.\n[*] 1 fixable with the `--fix` option (1 hidden fix can be enabled with the `--unsafe-fixes` option)."),
("imports.unsorted", "ERROR: /app/src/main.py Imports are incorrectly sorted and/or formatted.\n--- /app/src/main.py:before\t2026-01-01\n+++ /app/src/main.py:after\t2026-01-01"),
("whitespace.trailing", "app.py:3: trailing whitespace.\n+    return x  "),
("precommit.files_modified", "black....................................................................Failed\n- hook id: black\n- files were modified by this hook\n\nreformatted src/app.py\n\nAll done! ✨ 🍰 ✨\n1 file reformatted."),
("types.missing_stubs", 'app.py:2: error: Library stubs not installed for "requests.adapters"  [import-untyped]\napp.py:2: note: Hint: "python3 -m pip install types-requests"'),
("deps.pip_no_matching_distribution", "ERROR: Could not find a version that satisfies the requirement tensorflow==2.99 (from versions: 2.12.0, 2.13.0)\nERROR: No matching distribution found for tensorflow==2.99"),
("deps.externally_managed", "error: externally-managed-environment\n\n× This environment is externally managed\n╰─> To install Python packages system-wide, try brew install\n    xyz, where xyz is the package you are trying to\n    install."),
("deps.lockfile_outdated", "npm ERR! code EUSAGE\nnpm ERR!\nnpm ERR! `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync. Please update your lock file with `npm install` before continuing."),
("node.modules_missing", "node:internal/modules/cjs/loader:1080\n  throw err;\n  ^\n\nError: Cannot find module '@babel/core'\nRequire stack:\n- /app/node_modules/babel-jest/build/index.js"),
("node.missing_script", 'npm ERR! Missing script: "start"\nnpm ERR! \nnpm ERR! Did you mean one of these?\nnpm ERR!     npm star # Mark your favorite packages'),
("git.index_lock", "fatal: Unable to create '/home/runner/work/repo/repo/.git/index.lock': File exists.\n\nAnother git process seems to be running in this repository"),
("git.non_fast_forward", "To github.com:acme/app.git\n ! [rejected]        feature/x -> feature/x (non-fast-forward)\nerror: failed to push some refs to 'github.com:acme/app.git'"),
("git.local_changes_overwritten", "error: Your local changes to the following files would be overwritten by merge:\n\tsrc/app.py\nPlease commit your changes or stash them before you merge.\nAborting\nUpdating 1a2b3c4..5d6e7f8"),
("git.merge_conflict", "Auto-merging src/app.py\nCONFLICT (content): Merge conflict in src/app.py\nerror: could not apply 1a2b3c4... feature\nhint: Resolve all conflicts manually"),
("fs.permission_denied_exec", "/bin/bash: ./deploy.sh: Permission denied"),
("fs.no_space", "write /var/lib/docker/tmp/GetImageBlob123: no space left on device"),
("proc.command_not_found", "/bin/sh: 1: yarn: not found"),
("proc.port_in_use", "Error: listen EADDRINUSE: address already in use 0.0.0.0:8080\n    at Server.setupListenHandle [as _listen2] (node:net:1817:16)"),
("proc.oom_killed", "Killed\nmake: *** [Makefile:12: build] Error 137"),
("net.connection_refused", "redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379. Connection refused."),
("net.timeout", "pip._vendor.urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Read timed out."),
("net.rate_limited", "Error: API rate limit exceeded for 52.1.2.3. (But here's the good news: Authenticated requests get a higher rate limit.)"),
("net.dns_failure", "fatal: unable to access 'https://github.com/acme/app.git/': Could not resolve host: github.com"),
("auth.expired_credentials", "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/acme/app.git/'\nerror: token expired"),
("db.connection_lost", "psycopg2.OperationalError: server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."),
("tls.cert_verify_failed", "fatal: unable to access 'https://git.internal/acme/app.git/': SSL certificate problem: unable to get local issuer certificate"),
("test.flaky", "tests/test_ws.py::test_reconnect RERUN\ntests/test_ws.py::test_reconnect PASSED\n=== 40 passed, 1 rerun in 12.3s ==="),
("node.modules_missing", "  ● Test suite failed to run\n\n    Cannot find module 'lodash' from 'src/index.test.js'"),
("node.modules_missing", "src/server.ts(1,21): error TS2307: Cannot find module 'express' or its corresponding type declarations."),
("proc.command_not_found", "env: node: No such file or directory"),
("proc.command_not_found", "make: protoc: Command not found\nmake: *** [Makefile:8: gen] Error 127"),
("fs.permission_denied_exec", "exec ./entrypoint.sh: permission denied"),
("net.timeout", "Error: 504 Gateway Timeout: upstream did not respond"),
("net.rate_limited", "ERROR: Request failed with status code 429"),
("tls.cert_verify_failed", "Error: unable to verify the first certificate\n    at TLSSocket.onConnectSecure (node:_tls_wrap:1659:34) {\n  code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'\n}"),
("auth.expired_credentials", "Error: Request failed: jwt expired"),
("net.dns_failure", "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/requests/\nERROR: Could not find a version that satisfies the requirement requests (from versions: none)\nERROR: No matching distribution found for requests"),
("fs.no_space", "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"),
("js.syntax_error", "error: The module's source code could not be parsed: Expected ';', '}' or <eof> at file:///app/main.ts:3:13\n\n  const x = 1 2;\n              ~"),
("js.syntax_error", "src/index.ts:4:2 - error TS1128: Declaration or statement expected.\n\n4 }}\n   ~\n\nFound 1 error in src/index.ts:4"),
("js.syntax_error", "src/app.tsx(12,5): error TS1005: '}' expected."),
("js.syntax_error", "SyntaxError: Export named 'helper' not found in module '/app/src/lib.js'.\n\nBun v1.1.30 (Linux x64)"),
("js.syntax_error", "ERROR in ./src/App.js\nModule build failed (from ./node_modules/babel-loader/lib/index.js):\nSyntaxError: /app/src/App.js: Unexpected token (12:4)"),
("bun.modules_missing", 'error: Cannot find package "zod" from "/app/src/index.ts"\n\nBun v1.0.25 (Linux x64)'),
("node.local_module_missing", "error: Cannot find module './lib/util' from '/app/index.ts'\n\nBun v1.1.30 (Linux x64)"),
(None, "src/app.ts(3,1): error TS1192: Module '\"fs\"' has no default export."),
(None, "src/app.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'."),
(None, "1 | throw new Error(\"bad\");\n          ^\nerror: bad\n      at /app/t.js:1:11\n\nBun v1.4.5 (Linux x64)"),
(None, "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    assert cfg['debug'] is False\nAssertionError"),
(None, "FAILED tests/test_orders.py::test_total - assert 41.99 == 42.0"),
(None, "TypeError: Cannot read properties of undefined (reading 'map')\n    at render (/app/src/List.jsx:12:20)"),
(None, "Traceback (most recent call last):\n  File \"/app/svc.py\", line 40, in handle\n    user = USERS[user_id]\nKeyError: 42"),
]


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Lookup:
    return Lookup(load_catalog(), LocalCache(tmp_path_factory.mktemp("c") / "c.sqlite3"))


@pytest.mark.parametrize(("want", "text"), VARIANTS, ids=[f"{w}-{i}" for i, (w, _) in
                                                        enumerate(VARIANTS)])
def test_variant_gets_the_right_pattern(lookup: Lookup, want: str | None, text: str) -> None:
    result = lookup.lookup(error_id="v", text=text, fine="", coarse="", record=False)
    if want is None:  # a logic bug: never a SAFE or MODERATE fix
        assert result.fix is None or result.fix["category"] == "RISKY"
    else:
        assert result.pattern_id == want, result.reason
