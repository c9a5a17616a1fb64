-- Versioned store of learned artifacts (pattern sets, embedding index, thresholds):
-- pipeline/guardrails/versions.py. Exactly one active version per artifact name.
CREATE TABLE IF NOT EXISTS artifact_versions (
    name          text NOT NULL,
    version       integer NOT NULL,
    payload       jsonb NOT NULL,
    checksum      text NOT NULL,
    note          text NOT NULL DEFAULT '',
    success_rate  double precision,
    active        boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS artifact_versions_one_active
    ON artifact_versions (name) WHERE active;
