-- Replay copies (<id>~replay-<token>) count in heal metrics / heal report only when their
-- original has no outcome of its own (pipeline/replayid.py); that question looks up
-- lifecycle_outcomes by error id.
CREATE INDEX IF NOT EXISTS lifecycle_outcomes_error_idx ON lifecycle_outcomes (error_id);
