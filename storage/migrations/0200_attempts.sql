-- Validate/apply records: one attempt per (error, fix), every judge vote, every verification
-- run, and the apply result (its primary key is the "never applied twice" marker).
-- Idempotent (IF NOT EXISTS) so a re-run changes nothing.
CREATE TABLE IF NOT EXISTS attempts (
    id           text PRIMARY KEY,              -- the error id
    error_id     text NOT NULL,
    fingerprint  text NOT NULL DEFAULT '',
    fix_id       text NOT NULL DEFAULT '',
    attempt      integer NOT NULL DEFAULT 1,
    repo         text NOT NULL DEFAULT '',
    command      jsonb NOT NULL DEFAULT '[]'::jsonb,
    decision     text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT '',
    mode         text NOT NULL DEFAULT '',
    branch       text NOT NULL DEFAULT '',
    commit       text NOT NULL DEFAULT '',
    preflight    jsonb NOT NULL DEFAULT '[]'::jsonb,
    fix          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS attempts_fix_idx ON attempts (fix_id, created_at DESC);
CREATE INDEX IF NOT EXISTS attempts_fp_idx ON attempts (fingerprint);

CREATE TABLE IF NOT EXISTS attempt_votes (
    attempt_id   text NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    judge        text NOT NULL,
    approve      boolean NOT NULL,
    reason       text NOT NULL DEFAULT '',
    cost_usd     double precision NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (attempt_id, judge)
);

CREATE TABLE IF NOT EXISTS verification_runs (
    attempt_id   text NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    name         text NOT NULL,
    phase        text NOT NULL,
    argv         jsonb NOT NULL DEFAULT '[]'::jsonb,
    exit_code    integer,
    timed_out    boolean NOT NULL DEFAULT false,
    duration_s   double precision NOT NULL DEFAULT 0,
    tail         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (attempt_id, phase, name)
);

CREATE TABLE IF NOT EXISTS apply_results (
    error_id     text PRIMARY KEY,
    fix_id       text NOT NULL DEFAULT '',
    status       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    branch       text NOT NULL DEFAULT '',
    commit       text NOT NULL DEFAULT '',
    revert_commit text NOT NULL DEFAULT '',
    steps        jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
