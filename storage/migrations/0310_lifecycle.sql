-- Lifecycle and learning (pipeline/lifecycle, storage/lifecycle.py). The ``fixes`` table is
-- owned by the lookup stage; the lifecycle only updates ``fixes.state`` and keeps its own
-- evidence here.

-- success statistics and lifecycle state per (fingerprint, fix): a Beta(1 + successes,
-- 1 + failures + reverts) posterior
CREATE TABLE IF NOT EXISTS fix_stats (
    fingerprint       text NOT NULL,
    fix_id            text NOT NULL,
    state             text NOT NULL DEFAULT 'DRAFT',
    successes         bigint NOT NULL DEFAULT 0,
    failures          bigint NOT NULL DEFAULT 0,
    reverts           bigint NOT NULL DEFAULT 0,
    first_success_at  timestamptz,
    last_used         timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, fix_id)
);
CREATE INDEX IF NOT EXISTS fix_stats_fix_idx ON fix_stats (fix_id);

-- every outcome seen, once per event id (redelivery changes nothing twice)
CREATE TABLE IF NOT EXISTS lifecycle_outcomes (
    event_id     text PRIMARY KEY,
    error_id     text NOT NULL,
    fingerprint  text NOT NULL,
    fix_id       text NOT NULL DEFAULT '',
    status       text NOT NULL,
    workflow     text NOT NULL DEFAULT '',
    step         text NOT NULL DEFAULT '',
    commit       text NOT NULL DEFAULT '',
    ok           boolean,
    ts           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lifecycle_outcomes_fp_idx ON lifecycle_outcomes (fingerprint, ts);

-- every lifecycle transition with its reason (also in the audit log)
CREATE TABLE IF NOT EXISTS lifecycle_transitions (
    id           bigserial PRIMARY KEY,
    fingerprint  text NOT NULL,
    fix_id       text NOT NULL,
    src          text NOT NULL,
    dst          text NOT NULL,
    reason       text NOT NULL,
    ts           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lifecycle_transitions_fp_idx ON lifecycle_transitions (fingerprint, id);

-- Thompson-sampling choices, with every draw, for `heal explain`
CREATE TABLE IF NOT EXISTS fix_rankings (
    id           bigserial PRIMARY KEY,
    fingerprint  text NOT NULL,
    chosen       text NOT NULL,
    draws        jsonb NOT NULL,
    ts           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fix_rankings_fp_idx ON fix_rankings (fingerprint, id);

-- fingerprints a person asked to ignore (`heal ignore FP`)
CREATE TABLE IF NOT EXISTS fingerprint_controls (
    fingerprint  text PRIMARY KEY,
    ignored      boolean NOT NULL DEFAULT false,
    reason       text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- learning from precedent: the last failure of a workflow step per fingerprint, and the DRAFT
-- fixes learned when that step later succeeded on a changed repository
CREATE TABLE IF NOT EXISTS step_failures (
    workflow     text NOT NULL,
    step         text NOT NULL,
    fingerprint  text NOT NULL,
    repo_path    text NOT NULL DEFAULT '',
    commit       text NOT NULL DEFAULT '',
    ts           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, step, fingerprint)
);
CREATE TABLE IF NOT EXISTS precedent_drafts (
    id           text PRIMARY KEY,
    fingerprint  text NOT NULL,
    workflow     text NOT NULL,
    step         text NOT NULL,
    repo_path    text NOT NULL,
    from_commit  text NOT NULL,
    to_commit    text NOT NULL,
    diff         text NOT NULL,
    state        text NOT NULL DEFAULT 'DRAFT',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS precedent_drafts_fp_idx ON precedent_drafts (fingerprint);
