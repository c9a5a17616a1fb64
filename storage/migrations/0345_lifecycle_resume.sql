-- An outcome whose after-steps (escalation, references, causes, audit) have not all run yet:
-- a redelivery after a PostgreSQL outage resumes them from the stored result instead of
-- skipping them (issue 11, item 11). Rows recorded before this migration are finished.
ALTER TABLE lifecycle_outcomes ADD COLUMN IF NOT EXISTS finished boolean NOT NULL DEFAULT true;
ALTER TABLE lifecycle_outcomes ADD COLUMN IF NOT EXISTS result jsonb;
