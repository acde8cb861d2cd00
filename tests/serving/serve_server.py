"""A real `instantid serve` process on a loopback port, for the API tests (tiny model, dlib faces)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

# Lean jobs: the tiny model at 64x64 with 2 steps takes about a second on one CPU core.
QUEUE_SIZE = 4
FAST = {"num_inference_steps": "2", "width": "64", "height": "64"}
LORA_SCALE = 0.5  # the shared server's tiny LoRA ("sketch") at start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, state_dir: Path, *extra: str, host: str = "127.0.0.1", env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(state_dir).with_name(Path(state_dir).name + f"-{self.port}.log")
        self.command = [sys.executable, "-m", "instantid", "serve", "--tiny", "--host", host, "--port", str(self.port),
                        "--state-dir", str(state_dir), *extra]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(self.command, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        env=environment)

    def wait(self, path: str = "/readyz", timeout: float = 180, headers: dict | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(self.url + path, timeout=2, headers=headers).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy loading
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the restart test's crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def submit(url: str, photos: list[Path], pose: Path | None = None, *, timeout: float = 60,
           **fields) -> requests.Response:
    files = [("face", (p.name, p.read_bytes())) for p in photos]
    if pose is not None:
        files.append(("pose", (pose.name, pose.read_bytes())))
    data = {"prompt": "a portrait", **FAST, **{k: str(v) for k, v in fields.items()}}
    return requests.post(f"{url}/v1/generations", data=data, files=files, timeout=timeout)


def wait_for(url: str, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 180,
             seen: list | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/v1/generations/{job_id}", timeout=10).json()
        if seen is not None:
            seen.append(job)
        if job["status"] in states:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
