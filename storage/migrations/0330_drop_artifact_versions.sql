-- The versioned store (pipeline/guardrails/versions.py) had no caller in any stage, command
-- or API and was deleted (issue 10, item 9); its table goes with it. 0320 stays as history.
DROP TABLE IF EXISTS artifact_versions;
