-- Running lookup workers hear at once what changes their caches (issue: a lesson taught with
-- `heal learn` was invisible to them for up to 30 s). Every change of what the lookup reads
-- as a lesson or a state sends NOTIFY heal_lookup, delivered when its transaction commits
-- (so a worker that hears it re-reads committed data). Row triggers with WHEN clauses: the
-- lookup's own busy writes (occurrence counters, fingerprints mapped by a detection rule,
-- outcome counts) send nothing, and an upsert that changes nothing sends nothing.
CREATE OR REPLACE FUNCTION heal_lookup_notice() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('heal_lookup', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

-- the taught catalog (heal learn, reviews, packs, agents)
CREATE TRIGGER heal_lookup_patterns_ins_del AFTER INSERT OR DELETE ON patterns
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_patterns_upd AFTER UPDATE ON patterns FOR EACH ROW
    WHEN ((OLD.name, OLD.category, OLD.description, OLD.detection, OLD.params, OLD.examples,
           OLD.source, OLD.state, OLD.priority)
          IS DISTINCT FROM
          (NEW.name, NEW.category, NEW.description, NEW.detection, NEW.params, NEW.examples,
           NEW.source, NEW.state, NEW.priority))
    EXECUTE FUNCTION heal_lookup_notice();

-- fixes and their states (quarantine, unquarantine, graduation)
CREATE TRIGGER heal_lookup_fixes_ins_del AFTER INSERT OR DELETE ON fixes
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_fixes_upd AFTER UPDATE ON fixes FOR EACH ROW
    WHEN ((OLD.pattern_id, OLD.kind, OLD.category, OLD.state, OLD.title, OLD.explanation,
           OLD.template)
          IS DISTINCT FROM
          (NEW.pattern_id, NEW.kind, NEW.category, NEW.state, NEW.title, NEW.explanation,
           NEW.template))
    EXECUTE FUNCTION heal_lookup_notice();

-- fingerprints mapped to a pattern by a person (a rule's own mappings are re-derived anyway)
CREATE TRIGGER heal_lookup_fingerprints_ins AFTER INSERT ON pattern_fingerprints FOR EACH ROW
    WHEN (NEW.source <> 'rule') EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_fingerprints_upd AFTER UPDATE ON pattern_fingerprints FOR EACH ROW
    WHEN ((OLD.pattern_id, OLD.source) IS DISTINCT FROM (NEW.pattern_id, NEW.source))
    EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_fingerprints_del AFTER DELETE ON pattern_fingerprints
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();

-- heal ignore / unignore
CREATE TRIGGER heal_lookup_controls AFTER INSERT OR UPDATE OR DELETE ON fingerprint_controls
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();

-- fixes learned from precedent, and their per-fingerprint lifecycle states
CREATE TRIGGER heal_lookup_precedents AFTER INSERT OR UPDATE OR DELETE ON precedent_drafts
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_fix_stats_ins AFTER INSERT ON fix_stats FOR EACH ROW
    WHEN (NEW.state <> 'DRAFT') EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_fix_stats_upd AFTER UPDATE ON fix_stats FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION heal_lookup_notice();

-- a flaky outcome (the retry playbook replaces code changes), references to embed
CREATE TRIGGER heal_lookup_flaky AFTER INSERT ON lifecycle_outcomes FOR EACH ROW
    WHEN (NEW.status = 'flaky') EXECUTE FUNCTION heal_lookup_notice();
CREATE TRIGGER heal_lookup_references AFTER INSERT OR DELETE ON pattern_references
    FOR EACH ROW EXECUTE FUNCTION heal_lookup_notice();
