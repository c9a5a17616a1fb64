-- How the command of a queued group's sample ended (pipeline/fingerprint/status.py
-- exit_status: 'SIGSEGV', 'exit 3', '' when unknown or not part of the key). A text with no
-- line saying what failed is keyed on it, so the groups of `heal issues list`, labels and a
-- lesson taught from the queue re-fingerprint the sample with it, as the stage keyed it.
ALTER TABLE issue_queue ADD COLUMN IF NOT EXISTS ended text NOT NULL DEFAULT '';
