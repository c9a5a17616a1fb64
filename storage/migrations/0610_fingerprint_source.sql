-- Where a fingerprint mapping came from (pipeline/lookup/service.py, tier 1):
--   'rule'   the lookup learned it when a detection rule matched an error with that
--            fingerprint; a masked value (exit code 137 vs 1, HTTP 401 vs 413) can make
--            another error share it, so it is served only when that pattern's rule matches
--            the text again
--   'taught' a person mapped it on purpose (heal learn, heal issues review, packs): served
--            by the fingerprint alone
-- Rows the lookup learned before this column are found by the 'fingerprint' learnings row
-- its outbox wrote with each of them.
ALTER TABLE pattern_fingerprints ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'taught'
    CHECK (source IN ('rule', 'taught'));
UPDATE pattern_fingerprints f SET source = 'rule'
  FROM learnings l
 WHERE l.kind = 'fingerprint' AND l.subject = f.fingerprint
   AND l.data->>'level' = f.level AND l.data->>'pattern_id' = f.pattern_id;
