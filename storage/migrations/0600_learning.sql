-- Learning (pipeline/learn, storage/learned.py): patterns and fixes taught by people, reviews,
-- agents and packs live in ``patterns``/``fixes`` next to the seeds (``source`` says where
-- they came from); this adds who taught them and from which error, their detection priority,
-- and the error texts of verified resolutions that tier 2 embeds as extra references.
ALTER TABLE patterns ADD COLUMN IF NOT EXISTS provenance jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE patterns ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 50;
ALTER TABLE fixes ADD COLUMN IF NOT EXISTS provenance jsonb NOT NULL DEFAULT '{}'::jsonb;

-- reference texts of a pattern beyond its examples: one per verified resolution (the masked
-- headline that tier 2 embeds), deduplicated by id = vector_id(pattern, text)
CREATE TABLE IF NOT EXISTS pattern_references (
    id           text PRIMARY KEY,
    pattern_id   text NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    text         text NOT NULL,
    source       text NOT NULL DEFAULT 'resolution',
    error_id     text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pattern_references_pattern_idx ON pattern_references (pattern_id);
