

def test_github_artifacts_never_land_in_the_checkout() -> None:
    """Without RUNNER_TEMP (a local GITHUB_ACTIONS=true), the system temp folder, not the
    checkout: heal keeps `git status` clean."""
    import tempfile
    from pathlib import Path

    from pipeline.ci.github import artifacts_dir

    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": "/src/app"}
    assert artifacts_dir(env) == Path(tempfile.gettempdir()) / "heal"
    assert artifacts_dir({**env, "RUNNER_TEMP": "/rt"}) == Path("/rt/heal")
    assert artifacts_dir({**env, "HEAL_ARTIFACTS_DIR": "/x"}) == Path("/x")
