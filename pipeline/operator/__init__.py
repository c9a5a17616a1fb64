"""The operator's views over the pipeline's records: ``heal explain`` (the story of one
fingerprint), ``heal metrics`` (rates over time windows) and the issue-queue review."""
