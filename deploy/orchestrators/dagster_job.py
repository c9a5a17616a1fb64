"""A Dagster job whose lint op heals itself (pip install 'heal[dagster]')."""

import os
import subprocess

from dagster import job, op

from producers.dagster import heal_failure_hook, healing

CHECKOUT = os.environ.get("CHECKOUT", ".")


@op
def lint(context):
    # on failure: publish, wait for heal's decision, and retry the op once a fix is applied
    with healing(context, command=["ruff", "check", "."], cwd=CHECKOUT, mode="auto-safe"):
        subprocess.run(["ruff", "check", "."], cwd=CHECKOUT, check=True,
                       capture_output=True, text=True)


@job(hooks={heal_failure_hook})  # publishes every other op failure of the job
def nightly():
    lint()
