-- The hash-chained audit log (pipeline/guardrails/audit.py). ``body`` is the exact canonical
-- JSON that was hashed, so verification never depends on how PostgreSQL renders jsonb.
CREATE TABLE IF NOT EXISTS audit_log (
    seq        bigint PRIMARY KEY,
    ts         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    subject    text NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL UNIQUE,
    body       text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, seq);
