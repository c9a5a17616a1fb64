"""Masks that kept too little (QA s18c D1-D3): a name after an id key, a name with a number
and a project's own folders are causes, not ids; only what looks random or is a deploy's
release id merges. Each pair through `heal diagnose --json` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint.paths import normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from tests._diagnose import diagnose_fingerprints

#: a Python crash in one frame under a folder
_FRAME = ('Traceback (most recent call last):\n'
          '  File "{path}", line 12, in handle\n'
          '    raise ValueError("bad thing happened")\n'
          'ValueError: bad thing happened\n')


def _fines(tmp_path: Path, texts: dict[str, str]) -> dict[str, str]:
    return {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}


def _assert_pairs_split(tmp_path: Path, pairs: dict[str, tuple[str, str]]) -> None:
    texts = {f"{name}_{side}": text for name, pair in pairs.items()
             for side, text in zip("ab", pair, strict=True)}
    fines = _fines(tmp_path, texts)
    merged = [name for name in pairs if fines[f"{name}_a"] == fines[f"{name}_b"]]
    assert not merged, merged


def test_names_after_an_id_key_are_causes(tmp_path: Path) -> None:
    # before (fp-v7 of fixF8): any mixed-case value after an id key or a short kind was <id>
    _assert_pairs_split(tmp_path, {
        "handler": ("ValueError: unknown handler id=PaymentHandler\n",
                    "ValueError: unknown handler id=ShippingHandler\n"),
        "queue": ("2026-03-04 10:00:00 ERROR no consumer for queue_id=EmailQueue\n",
                  "2026-03-04 10:00:00 ERROR no consumer for queue_id=BillingQueue\n"),
        "route": ("KeyError: route_id=getUserProfile has no handler\n",
                  "KeyError: route_id=listAllOrders has no handler\n"),
        "workflow": ("workflow failed: WorkflowId=OrderWorkflow not registered\n",
                     "workflow failed: WorkflowId=RefundWorkflow not registered\n"),
        "bucket": ("AccessDenied: bucket org-AcmeReportsEU is not yours\n",
                   "AccessDenied: bucket org-AcmeInvoicesEU is not yours\n"),
    })
    # random values still merge, with or without a digit
    fines = _fines(tmp_path, {
        "a": "ERROR delivery failed job_id=kQmTzWpVxRbN after retries\n",
        "b": "ERROR delivery failed job_id=tYpLkMnBvCxZ after retries\n",
        "c": "ERROR quota exceeded for acct_rLpQwZxKjHtY\n",
        "d": "ERROR quota exceeded for acct_9fKq2LmZx7Tp\n",
    })
    assert fines["a"] == fines["b"]
    assert fines["c"] == fines["d"]


def test_names_with_a_number_keep_their_name(tmp_path: Path) -> None:
    # before: api-2 and db-2 were both <idtoken> (api-12/db-12 already at fp-v6)
    _assert_pairs_split(tmp_path, {
        "port": ("ConnectionError: cannot reach api-2:8080\n",
                 "ConnectionError: cannot reach db-2:8080\n"),
        "model": ("NotFoundError: The model gpt-4 does not exist\n",
                  "NotFoundError: The model llama-3 does not exist\n"),
        "two_digits": ("ConnectionError: cannot reach api-12:8080\n",
                       "ConnectionError: cannot reach db-12:8080\n"),
    })
    fines = _fines(tmp_path, {
        "short": "ERROR replica cache-7 fell behind by 40 entries\n",
        "long": "ERROR replica cache-31 fell behind by 40 entries\n",
    })
    assert fines["short"] == fines["long"]


def test_fleet_hosts_where_a_host_stands_are_one(tmp_path: Path) -> None:
    fines = _fines(tmp_path, {
        "at_a": "ERROR task failed worker=812@web-3@ queue=mail: timeout\n",
        "at_b": "ERROR task failed worker=77@etl-40@ queue=mail: timeout\n",
        "on_a": "cannot take lock: held by PID 310 on node-3 since noon\n",
        "on_b": "cannot take lock: held by PID 92 on batch-17 since noon\n",
    })
    assert fines["at_a"] == fines["at_b"]
    assert fines["on_a"] == fines["on_b"]
    norm = DEFAULT_NORMALIZER.normalize
    assert norm("Mar  4 10:00:00 cron-2 crond[1]: x") == norm("Mar  4 10:00:00 app-41 crond[1]: x")


def test_project_folders_are_not_release_folders(tmp_path: Path) -> None:
    # before: a name with a digit after builds/versions/snapshots/releases, or any hex or
    # 8-digit folder anywhere, was cut as a deploy's release
    pairs = {
        "snapshots": ("/srv/app/tests/snapshots/case1/check.py",
                      "/srv/app/tests/snapshots/case2/check.py"),
        "releases_v": ("/srv/proj/releases/v1/notes.py", "/srv/proj/releases/v2/notes.py"),
        "builds": ("/home/ci/proj/builds/linux2/setup.py", "/home/ci/proj/builds/win32/setup.py"),
        "versions": ("/srv/app/api/versions/v2/handlers.py",
                     "/srv/app/api/versions/v3/handlers.py"),
        "hex": ("/srv/app/lib/deadbee1/util.py", "/srv/app/lib/cafe0123/util.py"),
        "stamp": ("/srv/app/jobs/20240101/run.py", "/srv/app/jobs/20240102/run.py"),
    }
    _assert_pairs_split(tmp_path, {
        name: (_FRAME.format(path=a), _FRAME.format(path=b)) for name, (a, b) in pairs.items()})
    # a deploy's release ids are still cut
    for deployed in ("/home/deploy/shop/releases/20261130093015/app/models/order.rb",
                     "/home/deploy/shop/current/app/models/order.rb",
                     "/srv/shop/deploys/2.4.0-rc.1/app/models/order.rb",
                     "/srv/shop/5e6f7a8b9c/app/models/order.rb"):
        assert normalize_path(deployed) == "app/models/order.rb", deployed
