"""Guardrails every stage consults: circuit breaker, audit log, execution state, budget and
escalation. Their state lives in Redis/PostgreSQL (shared by every worker), never in process
memory."""
