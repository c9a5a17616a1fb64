"""One screen of text for ``heal explain`` (the dict of :func:`pipeline.operator.explain`)."""

from __future__ import annotations

from typing import Any


def _indent(text: str, lines: int = 8, width: int = 110) -> list[str]:
    tail = [ln[:width] for ln in text.rstrip().splitlines()[-lines:]]
    return [f"    {ln}" for ln in tail]


def _score(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _head(s: dict[str, Any]) -> list[str]:
    out = [f"fingerprint {s['fingerprint']} ({s['level']})"]
    if s.get("error_id"):
        out.append(f"  error {s['error_id']} was recorded under this fingerprint")
    if s["level"] == "coarse":
        out.append(f"  groups {len(s['fines'])} fine fingerprint(s): {', '.join(s['fines'][:5])}")
    out.append(f"  why: {s['why']}")
    det = s.get("determinism")
    if det:
        verdict = ("flaky: it gets the retry playbook, never a code change, and its successes "
                   "never count toward graduation") if det["flaky"] else (
            "irregular occurrences, but no failure has passed on a plain re-run: treated as "
            "deterministic" if det["score"] < 0.5 else "deterministic")
        out.append(f"  determinism: {det['score']:.2f} ({verdict})")
    out += _samples(s)
    norm = s["normalization"]
    if norm:
        out += _grouping(norm.get("grouping"), s)
        out += ["", "normalization:", f"  template  {norm['template']}"]
        out += [f"  hint      {h}" for h in norm["hints"]] or ["  hint      nothing masked"]
        params = ", ".join(f"{k}={v}" for k, v in sorted(norm["params"].items()))
        out.append(f"  params    {params or '-'}")
    return out


def _samples(s: dict[str, Any]) -> list[str]:
    """The group's sample, said to be whose; and the asked-for error's own text when the
    sample is another error's."""
    error_id, of = s.get("error_id") or "", s.get("sample_error_id") or ""
    out: list[str] = []
    if s["sample"]:
        if error_id and of == error_id:
            title = f"sample: the text of error {error_id} (last lines):"
        else:
            whose = f"error {of}" if of else "from the issue queue"
            other = "" if not error_id else (
                f", not error {error_id}" if of else f"; it may be another error than {error_id}")
            title = f"sample of the group ({whose}{other}; last lines):"
        out += ["", title, *_indent(s["sample"])]
    if not error_id or of == error_id:
        return out
    own = s.get("error_text") or ""
    if own and own == s["sample"]:
        out.append(f"  (error {error_id}'s own text is the same)")
    elif own:
        out += ["", f"error {error_id}'s own text (last lines):", *_indent(own)]
        mine = s.get("error_normalization")
        if mine:
            out.append(f"  normalized {mine['normalized'][:200]}")
            out.append(f"  fine       {mine['fine']} (recomputed: "
                       + ("the same key as the group" if mine["fine"] == s["fingerprint"]
                          else "differs from the recorded one: the stage read it with its "
                          "repository or an older algorithm") + ")")
    else:
        out.append(f"  (error {error_id}'s own text is no longer recorded: no attempt, outcome "
                   "or fingerprints-stream entry holds it)")
    return out


def _grouping(g: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    """What the fine and coarse keys are made of (why these events share a fingerprint)."""
    if not g:
        return []
    fine, coarse = g["fine_key"], g["coarse_key"]
    frames = " | ".join(fine["frames"]) or "none"
    out = ["", "why grouped (the parts each fingerprint is a hash of, for the sample):",
           f"  fine    kind {fine['kind']} + class {fine['error_type'] or '-'} + message "
           f"{fine['message'][:200]!r} + project frames {frames}",
           f"  coarse  kind {coarse['kind']} + class {coarse['head'] or '-'} + top function "
           f"{coarse['top_function'] or '-'}"]
    if g.get("chain"):
        chain = " -> ".join(f"{c['type']}: {c['message'][:60]}" for c in g["chain"])
        out.append(f"  chain   {chain} -> {g['error_type']} (chosen: {g['chosen']})")
    norm = s["normalization"]
    if norm.get("recomputed_matches") is False:
        out.append(f"  (recomputed from the sample: {norm['fine']}, not the recorded "
                   f"{s['fingerprint']}: the stage read it with its repository or an older "
                   "algorithm)")
    return out


def _lookup(s: dict[str, Any]) -> list[str]:
    out = ["", "lookup path:"]
    for p in s["lookup"]["paths"]:
        out.append(f"  tier {p['tier'] or '-'}  {p['pattern_id']}  x{p['n']}  score "
                   f"{_score(p['min_score'])}..{_score(p['max_score'])}  last {p['last_seen']}")
    for p in s["lookup"]["learned"]:
        out.append(f"  learned   {p['level']} fingerprint -> {p['pattern_id']} ({p['hits']} hits)")
    if len(out) == 2:
        out.append(_miss(s["lookup"]))
    for c in s.get("causal") or []:
        out.append(f"  tier 3 chain: {' <- '.join(c['path'])} (confidence {c['confidence']:.2f})")
    for i in s["issues"]:
        out.append(f"  issue queue: {i['status']}, seen {i['count']}x, first {i['first_seen']},"
                   f" last {i['last_seen']}")
    return out


def _miss(lookup: dict[str, Any]) -> str:
    """The no-match line, with the lookup's own reason when its candidate event is still in
    the stream (explain recomputes nothing: no model is loaded)."""
    if lookup.get("miss_reason"):
        return f"  no pattern matched: {lookup['miss_reason']}"
    if "miss_reason" in lookup:
        return ("  no pattern matched (the lookup's reason is not recorded: its candidate "
                "event is no longer in the stream)")
    return "  no pattern matched"


def _fixes(s: dict[str, Any]) -> list[str]:
    out = ["", "candidate fixes:"]
    stats = {st["fix_id"]: st for st in s["fix_stats"]}
    for p in s["patterns"]:
        if not p["fix_id"]:
            continue
        st = stats.pop(p["fix_id"], None)
        post = st["posterior"] if st else None
        line = (f"  {p['fix_id']}  {p['kind']}/{p['category']}  fix state {p['state']}")
        if post:
            line += (f"  pair {st['state']} s={st['successes']} f={st['failures']} "
                     f"r={st['reverts']} posterior {post['mean']} "
                     f"[{post['lower95']}, {post['upper95']}]")
        out.append(line)
        if st and st.get("graduation"):
            out.append(f"    next: {st['graduation']}")
    for fix_id, st in stats.items():
        post = st["posterior"]
        out.append(f"  {fix_id}  pair {st['state']} posterior {post['mean']} "
                   f"[{post['lower95']}, {post['upper95']}]")
        if st.get("graduation"):
            out.append(f"    next: {st['graduation']}")
    for r in s["rankings"][:1]:
        draws = ", ".join(f"{d['fix_id']} {float(d['draw']):.2f} (Beta({d['alpha']:g}, "
                          f"{d['beta']:g}))" for d in r.get("draws") or [])
        out.append(f"  last ranking chose {r['chosen']} at {r['ts']}: {draws}".rstrip(": "))
    if len(out) == 2:
        out.append("  none")
    return out


#: pre-flight rows that are notes rather than checks: shown with their text
_NOTES = ("package manager", "trust", "policy")


def _preflight(checks: Any) -> list[str]:
    """The verdict's pre-flight: the checks that passed on one line, each refusal and each
    note (the package manager chosen, a trust or policy warning) on its own."""
    if not isinstance(checks, list):
        return []
    rows = [c for c in checks if isinstance(c, dict) and c.get("name")]
    passed = [str(c["name"]) for c in rows if c.get("ok") and c["name"] not in _NOTES]
    out = [f"    pre-flight passed: {', '.join(passed)}"] if passed else []
    for c in rows:
        if not c.get("ok"):
            out.append(f"    pre-flight refused {c['name']}: {c.get('reason') or '-'}")
        elif c["name"] in _NOTES:
            out.append(f"    {c['name']}: {c.get('reason') or '-'}")
    return out


def _attempt(a: dict[str, Any]) -> list[str]:
    repo = f"  repo {a['repo']}" if a.get("repo") else ""
    copy = f"  (replay of {a['replay_of']})" if a.get("replay_of") else ""
    out = [f"  {a['created_at']}  error {a['error_id']}{copy}{repo}  fix {a['fix_id'] or '-'}  "
           f"mode {a['mode']}  decision {a['decision']}", f"    reason: {a['reason']}"]
    out += _preflight(a.get("preflight"))
    for v in a["votes"]:
        out.append(f"    judge {v['judge']}: {'approve' if v['approve'] else 'reject'}"
                   f" ({v['reason']})")
    for r in a["runs"]:
        code = "timeout" if r["timed_out"] else r["exit_code"]
        out.append(f"    run {r['phase']}/{r['name']}: exit {code} in {r['duration_s']:.2f}s")
    ap = a["apply"]
    if ap:
        out.append(f"    applied: {ap['status']} {ap['detail']}".rstrip())
    return out


def _history(s: dict[str, Any]) -> list[str]:
    out = ["", "attempts (newest first):"]
    for a in s["attempts"]:
        out += _attempt(a)
    if not s["attempts"]:
        out.append("  none")
    out += ["", "outcomes (newest first):"]
    out += [f"  {o['ts']}  {o['status']}  fix {o['fix_id'] or '-'}  error {o['error_id']}"
            + (f"  (replay of {o['replay_of']})" if o.get("replay_of") else "")
            + (f"  repo {o['repo']}" if o.get("repo") else "")
            for o in s["outcomes"]] or ["  none"]
    out += ["", "lifecycle (newest first):"]
    out += [f"  {t['ts']}  {t['fix_id']}: {t['src']} -> {t['dst']} ({t['reason']})"
            for t in s["transitions"]] or ["  no transitions"]
    out += [f"  {b['ts']}  breaker at {b['scope']}: {b['from']} -> {b['to']} ({b['reason']}),"
            f" made by the rollback of error {b['error_id']}" for b in s.get("breaker") or []]
    for c in s["controls"]:
        out.append(f"  control: {'ignored' if c['ignored'] else 'not ignored'} ({c['reason']})")
    return out


def _letter(d: dict[str, Any]) -> list[str]:
    cut = f" (+{d['raw_truncated_bytes']} bytes cut)" if d.get("raw_truncated_bytes") else ""
    event = d["event"][:300] + ("..." if len(d["event"]) > 300 or d.get("event_cut") else "")
    return [f"  {d['ts'] or '-'}  error {d['error_id'] or '(no id readable)'}  stage "
            f"{d['stage'] or '-'}  deliveries {d['attempts'] or '-'}  from {d['stream']} "
            f"{d['entry_id']}  (dead entry {d['id']})",
            f"    reason: {d['reason'] or '-'}", f"    event{cut}: {event}"]


def _dead_letters(s: dict[str, Any]) -> list[str]:
    if not s.get("dead_letters"):
        return []
    out = ["", "dead letters of this error (newest first):"]
    for d in s["dead_letters"]:
        out += _letter(d)
    return out


def render_dead(letters: list[dict[str, Any]]) -> str:
    """``heal explain --dead``: the newest dead letters, newest first."""
    if not letters:
        return "no dead letters"
    out = [f"{len(letters)} newest dead letter(s), newest first "
           "(heal explain ERROR_ID tells one's story):"]
    for d in letters:
        out += _letter(d)
    return "\n".join(out)


def _render_dead_story(s: dict[str, Any]) -> str:
    out = [f"error {s['error_id']} (dead-lettered: the pipeline could not process it)",
           f"  why: {s['why']}", f"  what to do: {s['advice']}"]
    return "\n".join(out + _dead_letters(s))


def render(story: dict[str, Any]) -> str:
    if story.get("level") == "dead-lettered":
        return _render_dead_story(story)
    return "\n".join([*_head(story), *_lookup(story), *_fixes(story), *_history(story),
                      *_dead_letters(story)])
