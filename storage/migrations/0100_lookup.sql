-- Pattern memory for the lookup stage: patterns, fixes, the fingerprints known to map to a
-- pattern (tier 1), embeddings (tier 2), causal edges (tier 3), occurrences, learnings and the
-- issue queue of unmatched errors. Idempotent (IF NOT EXISTS) so a re-run changes nothing.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS patterns (
    id           text PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT 'RISKY',
    description  text NOT NULL DEFAULT '',
    detection    jsonb NOT NULL DEFAULT '[]'::jsonb,
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    examples     jsonb NOT NULL DEFAULT '[]'::jsonb,
    source       text NOT NULL DEFAULT 'seed',
    state        text NOT NULL DEFAULT 'ACTIVE',
    occurrences  bigint NOT NULL DEFAULT 0,
    first_seen   timestamptz,
    last_seen    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fixes (
    id           text PRIMARY KEY,
    pattern_id   text NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('diff', 'command', 'playbook', 'escalate')),
    category     text NOT NULL CHECK (category IN ('SAFE', 'MODERATE', 'RISKY')),
    state        text NOT NULL DEFAULT 'ACTIVE',
    title        text NOT NULL DEFAULT '',
    explanation  text NOT NULL DEFAULT '',
    template     jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts     bigint NOT NULL DEFAULT 0,
    successes    bigint NOT NULL DEFAULT 0,
    failures     bigint NOT NULL DEFAULT 0,
    rollbacks    bigint NOT NULL DEFAULT 0,
    last_used    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fixes_pattern_idx ON fixes (pattern_id);

-- fingerprints (fine or coarse) known to belong to a pattern: the tier 1 exact index
CREATE TABLE IF NOT EXISTS pattern_fingerprints (
    fingerprint  text NOT NULL,
    level        text NOT NULL CHECK (level IN ('fine', 'coarse')),
    pattern_id   text NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    hits         bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, level)
);

-- one row per error event that matched (primary key = error id: redelivery counts once)
CREATE TABLE IF NOT EXISTS occurrences (
    error_id     text PRIMARY KEY,
    pattern_id   text NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    fine         text NOT NULL DEFAULT '',
    coarse       text NOT NULL DEFAULT '',
    tier         smallint,
    score        double precision,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS occurrences_pattern_idx ON occurrences (pattern_id, seen_at);

-- what was learned (a fingerprint confirmed for a pattern, an edge, a threshold...)
CREATE TABLE IF NOT EXISTS learnings (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    subject      text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- "cause causes effect"; nodes are pattern ids or fingerprints
CREATE TABLE IF NOT EXISTS causal_edges (
    cause        text NOT NULL,
    effect       text NOT NULL,
    confidence   double precision NOT NULL CHECK (confidence > 0 AND confidence <= 1),
    evidence     bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cause, effect),
    CHECK (cause <> effect)
);
CREATE INDEX IF NOT EXISTS causal_edges_effect_idx ON causal_edges (effect);

-- tier 2: one row per reference text of a pattern (seed examples, confirmed errors)
CREATE TABLE IF NOT EXISTS pattern_embeddings (
    id           text PRIMARY KEY,
    pattern_id   text NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    text         text NOT NULL,
    embedding    vector(384) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pattern_embeddings_hnsw
    ON pattern_embeddings USING hnsw (embedding vector_cosine_ops);

-- unmatched errors, accumulated silently for review (one row per fine fingerprint)
CREATE TABLE IF NOT EXISTS issue_queue (
    fine         text PRIMARY KEY,
    coarse       text NOT NULL DEFAULT '',
    count        bigint NOT NULL DEFAULT 0,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    sample       text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'open'
);
CREATE INDEX IF NOT EXISTS issue_queue_status_idx ON issue_queue (status, count DESC);

-- outbox operations already applied (idempotent synchronisation from local outboxes)
CREATE TABLE IF NOT EXISTS applied_ops (
    op_id        text PRIMARY KEY,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
