"""Shadow mode: history through the real pipeline, nothing applied, a report of what
automation would have done.

Isolation (so shadow traffic never mixes with real work and nothing the user owns changes):

* streams and keys under a fresh prefix ``<prefix>-shadow-<token>`` (deleted afterwards);
* only the stages up to ``validate`` run (fingerprint -> lookup -> validate): no apply
  stage consumes the shadow verdicts, so even an ``apply`` decision is never carried out;
* each repository named by an event is copied to a temp dir and the events point at the
  copy: verification's worktrees and ``heal/...`` branches are made in the copy, never in
  the user's repository;
* ``$HEAL_HOME`` (audit log, worktrees) is a temp dir, and PostgreSQL is a copy of the
  configured database (``CREATE DATABASE ... TEMPLATE``, so the learned patterns are
  there) or, when the server refuses that (another session is connected to it), a fresh
  seeded one like ``heal demo``'s; the report says which.

Each event gets ``tags.mode`` = the mode being evaluated, so validate's own decision rule
(``pipeline.validate.validator.decide``) says what that mode would have done.
"""


from pipeline.shadow.report import Row, ShadowReport, eligible, render
from pipeline.shadow.runner import SHADOW_MODES, run_shadow
from pipeline.shadow.sandbox import Sandbox

__all__ = ["SHADOW_MODES", "Row", "Sandbox", "ShadowReport", "eligible", "render", "run_shadow"]
