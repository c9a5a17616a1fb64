-- The repository the outcome's error event names (its repo.path), so `heal explain` names the
-- repository of an outcome no attempt was made for (an escalation). Rows recorded before this
-- migration keep '' (explain then falls back to the attempt's repository, as before).
-- A constant default: PostgreSQL adds the column without rewriting the table.
ALTER TABLE lifecycle_outcomes ADD COLUMN IF NOT EXISTS repo text NOT NULL DEFAULT '';
