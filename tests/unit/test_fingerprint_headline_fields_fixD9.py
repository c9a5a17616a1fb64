"""The line that says what failed heads a text, never a record's field, a variable's setting,
a gutter, a location or a tool's report around it: Windows Event Viewer's ``Level: Error``,
GitHub Actions' ``env:`` block, PowerShell's ``Line |`` gutter and ``At x.ps1:N char:M``,
docker build's ``returned a non-zero code`` and BuildKit's ``failed to solve``, OpenTofu's
``Planning failed``, Maven's ``Compilation failure`` and webpack's ``ERROR in <path>``.
Two causes of one tool are two keys; one cause with and without the noise is one. Through
``heal diagnose --offline --json`` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from tests._diagnose import diagnose_fingerprints


def _event(source: str, event_id: str, computer: str, description: str) -> str:
    return (f"Log Name:      Application\nSource:        {source}\n"
            f"Date:          11/02/2026 04:12:55 AM\nEvent ID:      {event_id}\n"
            f"Task Category: None\nLevel:         Error\nKeywords:      Classic\n"
            f"User:          N/A\nComputer:      {computer}\nDescription:\n{description}\n")


SPOOLER_7000 = ("The Print Spooler service failed to start due to the following error: \n"
                "The system cannot find the file specified.")
SPOOLER_7000_DENIED = ("The Print Spooler service failed to start due to the following error: \n"
                       "Access is denied.")
SPOOLER_7031 = ("The Print Spooler service terminated unexpectedly.  It has done this 2 "
                "time(s).  The following corrective action will be taken in 60000 "
                "milliseconds: Restart the service.")


def test_event_viewer_text_is_keyed_on_its_description_not_its_level(tmp_path: Path) -> None:
    texts = {
        "missing_a": _event("Service Control Manager", "7000", "WEB-01.corp.example", SPOOLER_7000),
        "missing_b": _event("Service Control Manager", "7000", "WEB-07.corp.example", SPOOLER_7000),
        "denied": _event("Service Control Manager", "7000", "WEB-01.corp.example",
                         SPOOLER_7000_DENIED),
        "crashed": _event("Service Control Manager", "7031", "WEB-01.corp.example", SPOOLER_7031),
        # kubectl describe's ``Status: Failed`` is a verdict field too
        "evicted_disk": "Status:  Failed\nReason:  Evicted\nMessage: The node was low on "
                        "resource: ephemeral-storage.\n",
        "evicted_mem": "Status:  Failed\nReason:  Evicted\nMessage: The node was low on "
                       "resource: memory.\n",
    }
    found = diagnose_fingerprints(tmp_path, texts)
    assert found["missing_a"]["fine"] == found["missing_b"]["fine"]
    fines = {found[n]["fine"] for n in ("missing_a", "denied", "crashed")}
    assert len(fines) == 3
    assert found["evicted_disk"]["fine"] != found["evicted_mem"]["fine"]


ENV_BLOCK = ("##[group]Run ./deploy/publish.sh\nshell: /usr/bin/bash -e {0}\nenv:\n"
             "  NODE_ENV: production\n  AWS_REGION: eu-west-1\n##[endgroup]\n")


def test_an_env_line_is_no_error_code(tmp_path: Path) -> None:
    """``NODE_ENV: production`` is a setting: only an ``ERR`` code or a failure word makes an
    UPPER_SNAKE lead an error code's line (``ERR_PNPM_OUTDATED_LOCKFILE ...`` still heads)."""
    upload = "Uploading dist/ to s3://assets-bucket\n" \
             "upload: dist/app.js to s3://assets-bucket/app.js\n" \
             "Connection was closed before we received a valid response from endpoint URL\n"
    rsync = "rsync: [sender] write error: Broken pipe (32)\n" \
            "rsync error: error in socket IO (code 10)\n"
    pnpm = " ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\" because " \
           "pnpm-lock.yaml is not up to date with package.json\n"
    texts = {"upload": upload, "upload_env": ENV_BLOCK + upload, "rsync_env": ENV_BLOCK + rsync,
             "pnpm": pnpm, "pnpm_env": ENV_BLOCK + pnpm}
    found = diagnose_fingerprints(tmp_path, texts)
    assert found["upload"]["fine"] == found["upload_env"]["fine"]
    assert found["pnpm"]["fine"] == found["pnpm_env"]["fine"]
    assert len({found[n]["fine"] for n in ("upload_env", "rsync_env", "pnpm_env")}) == 3


def _ps7(command: str, message: str) -> str:
    return (f"{command}: /home/runner/work/infra/infra/scripts/sync.ps1:33\n"
            "Line |\n"
            f"  33 |      $r = {command} -Uri $Uri -OutFile $Out\n"
            "     |           ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
            f"     | {message}\n")


def _ps5(command: str, message: str, line: int) -> str:
    return (f"{command} : {message}\nAt D:\\a\\1\\s\\ci\\release.ps1:{line} char:5\n"
            f"+     {command} -Name Az.Accounts\n+     ~~~~~~~~~~~~~\n"
            "    + CategoryInfo          : ResourceUnavailable: (:) [], FileNotFoundException\n"
            "    + FullyQualifiedErrorId : Modules_ModuleNotFound\n")


def test_powershell_errors_are_keyed_on_their_message(tmp_path: Path) -> None:
    """PowerShell 7 prints the message in the excerpt's gutter (not source code), PowerShell
    5 a location line under it (a frame, not the headline)."""
    not_found = _ps7("Invoke-WebRequest", "Response status code does not indicate success: "
                     "404 (Not Found).")
    gateway = _ps7("Invoke-WebRequest", "Response status code does not indicate success: "
                   "502 (Bad Gateway).")
    module = ("The specified module 'Az.Accounts' was not loaded because no valid module file "
              "was found in any module directory.")
    texts = {"404": not_found, "502": gateway,
             "404_npm": "npm WARN deprecated glob@7.2.3: Glob versions prior to v9 are no "
                        "longer supported\n" + not_found,
             "ps5_a": _ps5("Import-Module", module, 12),
             "ps5_b": _ps5("Import-Module", module, 48),
             "ps5_other": _ps5("Install-Module", "The term 'Install-Module' is not recognized "
                               "as the name of a cmdlet, function, script file, or operable "
                               "program.", 12)}
    found = diagnose_fingerprints(tmp_path, texts)
    assert found["404"]["fine"] != found["502"]["fine"]
    assert found["404"]["fine"] == found["404_npm"]["fine"]
    assert found["ps5_a"]["fine"] == found["ps5_b"]["fine"]
    assert found["ps5_a"]["fine"] != found["ps5_other"]["fine"]


CLASSIC = "The command '/bin/sh -c cd native && ./build.sh' returned a non-zero code: 139\n"
BUILDKIT = ('ERROR: failed to solve: process "/bin/sh -c cd native && ./build.sh" did not '
            "complete successfully: exit code: 139\n")


def test_docker_builds_report_never_heads_over_the_steps_output(tmp_path: Path) -> None:
    segv = ("Compiling native/codec.c\n"
            "qemu: uncaught target signal 11 (Segmentation fault) - core dumped\n")
    illegal = "Compiling native/codec.c\nIllegal instruction (core dumped)\n"
    texts = {"segv": segv, "segv_classic": segv + CLASSIC, "segv_buildkit": segv + BUILDKIT,
             "illegal_classic": illegal + CLASSIC, "illegal_buildkit": illegal + BUILDKIT}
    found = diagnose_fingerprints(tmp_path, texts)
    for name in ("segv_classic", "segv_buildkit"):
        assert found[name]["fine"] == found["segv"]["fine"], name
    assert found["segv_classic"]["fine"] != found["illegal_classic"]["fine"]
    assert found["segv_buildkit"]["fine"] != found["illegal_buildkit"]["fine"]


def _tofu(error: str) -> str:
    return ("aws_s3_bucket.logs: Refreshing state... [id=logs-7f3a]\n\n"
            "Planning failed. OpenTofu encountered an error while generating this plan.\n\n"
            f"\u2577\n\u2502 Error: {error}\n\u2502 \n\u2502   on main.tf line 14, in "
            "resource \"aws_s3_bucket\" \"logs\":\n\u2575\n")


def _maven(goal: str, located: str) -> str:
    return ("[INFO] BUILD FAILURE\n"
            f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:"
            f"3.11.0:{goal} (default-{goal}) on project billing: Compilation failure\n"
            f"[ERROR] /home/runner/work/billing/billing/src/test/java/com/example/"
            f"InvoiceTest.java:{located}\n[ERROR] -> [Help 1]\n")


def _webpack(cause: str) -> str:
    return (f"ERROR in ./src/routes/Account.jsx 3:0-38\n{cause}\n"
            " @ ./src/main.jsx 5:0-40\n\nwebpack 5.91.0 compiled with 1 error in 4211 ms\n")


def test_a_tools_report_line_gives_way_to_the_line_naming_the_cause(tmp_path: Path) -> None:
    texts = {
        "tofu_args": _tofu("Unsupported argument"),
        "tofu_duplicate": _tofu("Duplicate resource \"aws_s3_bucket\" configuration"),
        "mvn_override": _maven("testCompile", "[17,9] method does not override or implement "
                               "a method from a supertype"),
        "mvn_package": _maven("testCompile", "[3,36] package org.junit.jupiter.api does not "
                              "exist"),
        "webpack_missing": _webpack("Module not found: Error: Can't resolve 'date-fns/locale' "
                                    "in '/srv/ci/web/src/routes'"),
        "webpack_babel": _webpack("Module build failed (from ./node_modules/babel-loader/lib/"
                                  "index.js):"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    for a, b in (("tofu_args", "tofu_duplicate"), ("mvn_override", "mvn_package"),
                 ("webpack_missing", "webpack_babel")):
        assert found[a]["fine"] != found[b]["fine"], (a, b)
