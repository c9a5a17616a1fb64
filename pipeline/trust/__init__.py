"""The trust boundary: what the operator decided versus what merely arrives as data.

    keys.py       the operator's signing key (file under HEAL_HOME or HEAL_SIGNING_KEY),
                  rotation with the previous key still accepted
    seal.py       stage events sealed on the way out, checked on the way in (the runtime's
                  loader wraps every stage handler)
    attest.py     heal run signs the events of commands it ran itself
    operator.py   operator configuration ($HEAL_HOME/heal.toml or HEAL_CONFIG): registered
                  repositories, allowed commands and packages, max mode, checks, LLM judge;
                  ``restrict`` narrows a repository's policy by it
    private.py    files only the operator may provide (operator configuration, keys, serve
                  tokens, audit key): refused when git tracks them, another user owns them
                  or others may write them
    boundary.py   ``assess(event)``: which repository, command and mode one event may get
    packages.py   pip installs: declared names only, into the interpreter that failed
"""
