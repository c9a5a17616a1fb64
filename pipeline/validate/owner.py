"""Who is doing a piece of validation work, and whether that process still lives.

A validation leaves state behind while it runs: two worktrees and a ``heal/`` branch, and the
dedupe marker of its request. A heal process killed mid-validation (SIGKILL, the OOM killer)
cleans up neither. Each piece records its owner as ``host|pid|start time``; another process on
the same host recognises a dead owner (the pid is gone, or reused by a process started at
another time) and takes the state over. An owner on another host is taken as alive: its state
ends with its time-to-live.
"""

from __future__ import annotations

import os
import socket

import psutil


def _started(pid: int) -> str:
    try:
        return repr(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return ""


def owner_token(pid: int | None = None) -> str:
    """This process (or ``pid``) as ``host|pid|start time``."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}|{pid}|{_started(pid)}"


def owner_gone(token: str) -> bool:
    """True only when ``token`` names a process of this host that no longer runs."""
    host, _, rest = token.partition("|")
    pid_text, _, started = rest.partition("|")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        proc = psutil.Process(int(pid_text))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    return bool(started) and _started(int(pid_text)) not in ("", started)
