"""A real multi-node Ray cluster on this machine: `ray start --head` plus `ray start --address` nodes, each with
its own ports (all on 127.0.0.1) and one logical CPU, in a temporary folder of our own, with Ray's token
authentication and a token of our own (`env` carries it to every process that joins: the API, probes). The
head runs Ray's dashboard on loopback because Ray's public state API (`ray.util.state`), which `probe` reads,
is served by it.
Stopping it ends exactly the processes of this cluster (found by that folder), never other Ray instances."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PROBE = """
import json, sys, ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1], log_to_driver=False)
replicas = [{"pid": a.pid, "node_id": a.node_id, "state": a.state}
            for a in list_actors(address=sys.argv[2], detail=True, limit=10_000, raise_on_missing_output=False)
            if "GenerationReplica" in (a.class_name or "")]
print(json.dumps({"nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]], "replicas": replicas}))
"""


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class RayCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="iray-"))  # short: Ray's socket paths must stay under 108 bytes
        self.ray = str(Path(sys.executable).with_name("ray"))
        token = self.temp / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(token)}
        self.port = self.dashboard = None
        for index in range(nodes):
            self._start_node(index == 0, cpus_per_node)
        self.address = f"127.0.0.1:{self.port}"

    def _start_node(self, head: bool, cpus: int) -> None:
        (gcs, manager, objects, agent_http, agent_grpc, metrics, runtime_env, client, dashboard,
         worker_low) = _free_ports(10)
        command = [self.ray, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                   "--object-store-memory", str(80 * 2**20), "--temp-dir", str(self.temp),
                   "--node-manager-port", str(manager), "--object-manager-port", str(objects),
                   "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
                   "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
                   "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + 40),
                   "--disable-usage-stats"]
        if head:
            self.port = gcs
            # the dashboard (headless, loopback only) serves Ray's public state API, which the probe reads
            self.dashboard = f"http://127.0.0.1:{dashboard}"
            command += ["--head", "--port", str(gcs), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                        "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client)]
        else:
            command += ["--address", f"127.0.0.1:{self.port}"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")

    def probe(self) -> dict:
        """The alive node ids and the GenerationReplica actors (pid, node id, state), from a short-lived driver."""
        done = subprocess.run([sys.executable, "-c", PROBE, self.address, self.dashboard], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"cluster probe failed: {done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def _processes(self) -> list[psutil.Process]:
        """Our cluster's processes: those naming our temp folder, and everything they started."""
        roots = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp) in part for part in process.info["cmdline"] or ()):
                    roots.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        found = {p.pid: p for p in roots}
        for root in roots:
            try:
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> None:
        processes = self._processes()
        for process in processes:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        subprocess.run(["rm", "-rf", str(self.temp)], check=False)


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout} s")
