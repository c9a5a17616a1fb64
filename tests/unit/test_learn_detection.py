"""Taught detection rules: a derived rule matches variants with other paths and numbers, not
other errors, reuses the masking rules faithfully, and every accepted rule runs in bounded
time on hostile text; a person's --regex is refused in a backtracking shape."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.rules import RULES
from pipeline.learn.detection import check_regex, compact, compile_rule, derive_keeping

TEXT = ("Traceback (most recent call last):\n  File \"/srv/app/app.py\", line 3, in <module>\n"
        "    load()\nSettingsDriftError: answer must be 42 in /srv/app/conf/x.yaml, settings "
        "drifted at line 17 after 3.5s\n")


def rule_for(text: str) -> re.Pattern[str]:
    return compile_rule(derive_keeping(fingerprint_text(text).normalized, text, "")[0])


def test_a_derived_rule_matches_variants_and_not_other_errors() -> None:
    rule = rule_for(TEXT)
    assert rule.search(TEXT)
    variant = (TEXT.replace("42", "1234").replace("/srv/app/conf/x.yaml", "/home/u/b/y.yaml")
               .replace("17", "9").replace("3.5s", "20ms"))
    assert rule.search(variant)
    assert rule.search("SettingsDriftError: answer must be 7 in ./a/b.toml, settings drifted "
                       "at line 1 after 2s")
    assert not rule.search(TEXT.replace("drifted", "moved"))
    assert not rule.search(TEXT.replace("SettingsDriftError", "OtherError"))


def test_compacted_masking_rules_match_exactly_what_the_verbose_ones_match() -> None:
    texts = [Path(f).read_text(encoding="utf-8")
             for f in glob.glob("tests/fixtures/errors/*/*.txt")]
    assert len(texts) > 50
    for rule in RULES:
        verbose, flat = re.compile(rule.pattern, re.VERBOSE), re.compile(compact(rule.pattern))
        for text in texts:
            assert ([m.span() for m in verbose.finditer(text)]
                    == [m.span() for m in flat.finditer(text)]), rule.name


@pytest.mark.timeout(20)
def test_derived_rules_stay_linear_on_hostile_text() -> None:
    rule = rule_for(TEXT)
    for hostile in ("SettingsDriftError: answer must be " + "1 " * 100_000,
                    "SettingsDriftError: answer must be 1 in " + "/a" * 100_000 + ",",
                    "SettingsDriftError: " + " " * 200_000 + "x"):
        assert rule.search(hostile) is None


def test_a_headline_of_only_placeholders_derives_no_rule() -> None:
    with pytest.raises(UsageError, match="too little constant text"):
        derive_keeping("<num> <path>", "1 /a", "")


@pytest.mark.parametrize("regex", [r"(a+)+b", r"(?:a++)+b", r"(?>\S+)x", r".*a.*b",
                                   r"foo\d+bar", r"(\w)\1", r"a{1,10}b{1,10}c{1,10}d{1,10}",
                                   r"(?:\w{1,5}){1,5}", r"(unclosed"])
def test_backtracking_or_invalid_regexes_are_refused(regex: str) -> None:
    with pytest.raises(UsageError, match="--regex"):
        check_regex(regex)


@pytest.mark.parametrize("regex", [r"foo\d++bar", r"^E: (?>\S++) failed \d{1,10}",
                                   r"cache [^ ]*+ corrupt", r"x|y\d{1,3}"])
def test_bounded_regexes_are_accepted(regex: str) -> None:
    assert check_regex(regex) == regex


def test_a_name_relates_to_a_part_or_a_whole_of_the_value() -> None:
    from pipeline.learn.detection import relates

    for value, token in (("react-dom/client", "react-dom"), ("react-dom/client", "react-dom@18"),
                         ("yaml", "PyYAML==6.0"), ("PIL", "pillow"), ("google.protobuf",
                         "protobuf"), ("yaml_nosuch", "yaml-nosuch-dist"), ("left-pad",
                         "Left_Pad")):
        assert relates(value, token), (value, token)
    for value, token in (("bs4", "beautifulsoup4"), ("sklearn", "scikit-learn"),
                         ("lodash", "left-pad"), ("./lib/helpers", "x")):
        assert not relates(value, token), (value, token)


def test_the_values_a_command_names_are_its_arguments_not_its_verbs_or_flags() -> None:
    from pipeline.learn.detection import named_values

    assert named_values(["npm", "install", "--save-dev", "react-dom"]) == ["react-dom"]
    assert named_values(["python", "-m", "pip", "install", "-U", "bs4x"]) == ["bs4x"]
    for argv in (["npm", "ci"], ["npm", "install"], ["go", "mod", "tidy"],
                 ["git", "submodule", "update", "--init"], ["npx", "prisma", "generate"],
                 # the folder a command acts in names no value (a hook's lesson
                 # `python3 -m compileall -q .` kept every value of its error literal)
                 ["python3", "-m", "compileall", "-q", "."], ["ruff", "format", "./"]):
        assert named_values(argv) == [], argv
