"""``explain_grouping`` tells the truth: the parts it names are exactly what the fine and
coarse fingerprints hash, for every fixture error text (QA s15b defect 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.explain import explain_grouping
from pipeline.fingerprint.hashing import stable_hash
from pipeline.operator.groups import label

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
TEXTS = sorted(p for p in FIXTURES.glob("*/*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_named_parts_are_what_the_fingerprints_hash(path: Path) -> None:
    text = path.read_text(errors="replace")
    fp = fingerprint_text(text)
    g = explain_grouping(text)
    fine, coarse = g["fine_key"], g["coarse_key"]
    chain = [fine["chain"]] if fine["chain"] else []  # a chain's exceptions, when one
    assert stable_hash("fine", fine["kind"], fine["error_type"], fine["message"],
                       "|".join(fine["frames"]), *chain) == fp.fine == g["fine"]
    assert stable_hash("coarse", coarse["kind"], coarse["head"],
                       coarse["top_function"]) == fp.coarse == g["coarse"]
    assert g["steps"] and all(isinstance(s, str) for s in g["steps"])
    assert label(fp).isprintable()


def test_normalization_steps_name_collapsed_paths_lines_masks_and_the_chain() -> None:
    text = ("\x1b[31mjava.lang.RuntimeException: start failed\n"
            "\tat org.acme.Main.main(Main.java:5)\n"
            "Caused by: java.net.ConnectException: refused by 10.1.2.3:8080\n"
            "\tat org.acme.Net.dial(Net.java:77)\n\t... 1 more\x1b[0m\n")
    g = explain_grouping(text)
    assert g["error_type"] == "java.net.ConnectException"
    assert g["chain"] == [{"type": "java.lang.RuntimeException", "message": "start failed"}]
    steps = "\n".join(g["steps"])
    assert "terminal escape sequences (colours) removed" in steps
    assert "exception chain: java.lang.RuntimeException -> java.net.ConnectException" in steps
    assert "the root cause (the last 'Caused by')" in steps
    assert "<host>: 1 replaced" in steps and "Net.java:77" in steps

    py = ('Traceback (most recent call last):\n'
          '  File "/tmp/tmpq1w2e3/proj/tool/run.py", line 3, in <module>\n'
          '    import yaml\nModuleNotFoundError: No module named \'yaml\'\n')
    steps = "\n".join(explain_grouping(py)["steps"])
    assert "/tmp/tmpq1w2e3/proj/tool/run.py -> proj/tool/run.py" in steps
    assert "<module>: 'yaml' masked" in steps and "<package>" not in steps
