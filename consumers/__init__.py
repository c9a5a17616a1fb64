"""One module per consumer group. Each names its input and output stream at the top
(``INPUT``, ``OUTPUT``, ``GROUP``) and exposes ``build(ctx) -> StageHandler``; all logic lives
in ``pipeline/``."""
