"""The pre-seeded universal patterns, fixes and playbooks (YAML data files in this folder)."""
