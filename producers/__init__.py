"""Everything that publishes ErrorEvents to ``heal:errors`` (one module per source)."""
