"""An error is its whole chain (fp-v4): the other exceptions of a chained traceback enter the
fine key, each as its class and masked message, so one application exception raised from two
different causes is two errors (two fixes), while noise in the causes still merges."""

from __future__ import annotations

from pipeline.fingerprint import ALGORITHM_VERSION, fingerprint_text


def _chained(cause: str, where: str = "/srv/app", port: int = 5432) -> str:
    return ("Traceback (most recent call last):\n"
            f'  File "{where}/db.py", line 10, in connect\n'
            "    conn = psycopg.connect(dsn)\n"
            f"psycopg.OperationalError: connection to server at 10.0.0.9, port {port} "
            f"failed: {cause}\n\n"
            "The above exception was the direct cause of the following exception:\n\n"
            "Traceback (most recent call last):\n"
            f'  File "{where}/main.py", line 5, in <module>\n'
            "    db.connect()\n"
            f'  File "{where}/db.py", line 12, in connect\n'
            "    raise DatabaseUnavailable('db down') from e\n"
            "app.errors.DatabaseUnavailable: db down\n")


def test_one_exception_raised_from_two_causes_is_two_errors() -> None:
    auth = fingerprint_text(_chained("FATAL: password authentication failed"))
    missing = fingerprint_text(_chained("FATAL: database does not exist"))
    assert auth.extraction is not None
    assert auth.extraction.error_type == "app.errors.DatabaseUnavailable"
    assert auth.fine != missing.fine
    assert auth.coarse == missing.coarse  # the broad key stays the application's error


def test_noise_in_a_cause_still_merges() -> None:
    one = fingerprint_text(_chained("FATAL: password authentication failed"))
    other = fingerprint_text(_chained("FATAL: password authentication failed",
                                      where="/home/ci/app", port=6543))
    assert one.fine == other.fine


def test_a_hostile_chain_stays_bounded() -> None:
    link = ("java.lang.RuntimeException: wrapped " + "x" * 5000 + "\n"
            "\tat com.acme.A.run(A.java:1)\n")
    text = link + "".join("Caused by: " + link for _ in range(2000))
    fp = fingerprint_text(text)
    assert fp.fine.startswith(f"{ALGORITHM_VERSION}:") and len(fp.extraction.chain) >= 5
