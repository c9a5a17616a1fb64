"""No seed message for a person reads "the file line the line": a parameter some detection
rule of the pattern does not extract sits in an optional ``[[ ... ]]`` segment, which is left
out when the value is missing."""

from __future__ import annotations

from pipeline.fixes.params import ParamSpec
from pipeline.fixes.render import OPTIONAL, PLACEHOLDER, FixSpec, render_fix
from pipeline.lookup.catalog import load_catalog
from pipeline.model import Category, FixKind


def test_every_placeholder_outside_an_optional_segment_is_extracted_by_every_rule() -> None:
    unfilled = []
    for pattern in load_catalog().patterns.values():
        for fix in pattern.fixes:
            if fix.template.get("literal"):
                continue
            texts = [fix.explanation, str(fix.template.get("message", ""))]
            needed = {n for t in texts for n in PLACEHOLDER.findall(OPTIONAL.sub("", t))}
            for index, rule in enumerate(pattern.rules):
                got = {n.rstrip("0123456789") for n in rule.regex.groupindex}
                got |= set(rule.constants)
                got |= {n for n, spec in fix.params.items()  # derived, or with a default
                        if spec.source in got or spec.default is not None}
                unfilled += [f"{fix.id} rule {index}: {n}" for n in sorted(needed - got)]
    assert unfilled == []


def test_an_optional_segment_is_said_only_with_all_its_values() -> None:
    text = {"type": "str", "pattern": "^[^\\n]+$", "required": False}
    params = {"file": ParamSpec.from_dict("file", text),
              "line": ParamSpec.from_dict("line", {"type": "int", "required": False})}
    spec = FixSpec(id="x/fix", pattern_id="x.y", kind=FixKind.ESCALATE,
                   category=Category.RISKY, title="t", explanation="e",
                   template={"message": "Cannot parse the code[[ in {file}]][[ line {line}]]."},
                   params=params)
    assert render_fix(spec, {"file": "a.js", "line": "2"})["rendered"]["message"] == \
        "Cannot parse the code in a.js line 2."
    assert render_fix(spec, {"line": "2"})["rendered"]["message"] == \
        "Cannot parse the code line 2."
    assert render_fix(spec, {})["rendered"]["message"] == "Cannot parse the code."
