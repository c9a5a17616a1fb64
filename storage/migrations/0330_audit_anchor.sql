-- The head of each audit log file, anchored outside the file (pipeline/guardrails/audit.py):
-- a truncated, deleted or re-sealed file no longer matches its last anchored (seq, hash).
CREATE TABLE IF NOT EXISTS audit_anchor (
    log        text PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
