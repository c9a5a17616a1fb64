-- 0001 base (engines helper): the vector type every semantic lookup relies on.
-- schema_migrations itself is bootstrapped by storage/migrate.py (it must exist before the
-- first migration can be recorded); this file documents it.
CREATE EXTENSION IF NOT EXISTS vector;

COMMENT ON TABLE schema_migrations IS
    'migrations applied by storage/migrate.py: file name, sha256 of its text, when';
