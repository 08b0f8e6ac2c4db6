"""A real anvil (Foundry's EVM dev node) as a subprocess, for tests, benchmarks and the demo.

anvil cannot pick its own port (``--port 0`` is refused), so a free one is found by binding a socket first; another
process may take it in between, in which case the start is retried on a new port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

import wecross

#: Where ``npm install`` (package.json at the repository root) puts anvil.
REPO_ANVIL = Path(wecross.__file__).resolve().parent.parent / "node_modules" / ".bin" / "anvil"


class AnvilError(RuntimeError):
    """anvil is missing, did not start, or did not answer in time; the message says what to do."""


def find_anvil() -> Path:
    """The repository's node_modules/.bin/anvil, else one on PATH; AnvilError telling to run ``npm install``."""
    if REPO_ANVIL.is_file() and os.access(REPO_ANVIL, os.X_OK):
        return REPO_ANVIL
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise AnvilError(f"anvil not found (looked for {REPO_ANVIL} and on PATH): run `npm install` in "
                     f"{REPO_ANVIL.parents[2]} to install it (package.json lists @foundry-rs/anvil)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """One JSON-RPC call with the standard library (no web3 needed for test plumbing such as anvil_setBalance)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise AnvilError(f"{method} failed: {answer['error']}")
    return answer.get("result")


class Anvil:
    """One anvil process on 127.0.0.1. Start it with :meth:`start` (blocking) or :meth:`start_in_thread`."""

    def __init__(self, *, block_time: float | None = None, chain_id: int | None = None,
                 extra_args: tuple[str, ...] = (), startup_timeout: float = 20.0) -> None:
        self.block_time = block_time
        self.chain_id = chain_id
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._output: Any = None  # a temporary file, not a pipe: a pipe nobody reads could fill and stall anvil

    @property
    def url(self) -> str:
        if not self.port:
            raise AnvilError("anvil has not been started")
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc(self.url, method, params)

    def set_balance(self, address: str, wei: int) -> None:
        """Fund an account (keys made by the caller: anvil's well-known dev keys are never used)."""
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def start(self) -> Anvil:
        """Run anvil and wait until it answers eth_chainId; AnvilError with its output if it does not."""
        if self.process is not None:
            raise AnvilError("anvil is already running")
        binary = find_anvil()
        last_output = ""
        for _ in range(3):  # the free port may be taken by someone else before anvil binds it
            self.port = free_port()
            args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
            if self.block_time is not None:
                args += ["--block-time", str(self.block_time)]
            if self.chain_id is not None:
                args += ["--chain-id", str(self.chain_id)]
            args += list(self.extra_args)
            self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process, closed in stop()
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT)
            self.process = process
            if self._wait_ready(process):
                return self
            last_output = self._reap(process)
        raise AnvilError(f"anvil did not start within {self.startup_timeout} s: {last_output.strip() or 'no output'}")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
                return True
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.05)
        return False

    def _reap(self, process: subprocess.Popen[bytes]) -> str:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        self.process = None
        return self._close_output()

    def _close_output(self) -> str:
        output, self._output = self._output, None
        if output is None:
            return ""
        output.seek(0)
        text: str = output.read()[-2000:].decode(errors="replace")
        output.close()
        return text

    def start_in_thread(self) -> Deferred[Anvil]:
        """:meth:`start` off the reactor thread (it waits for the port), for trial tests and Twisted programs."""
        return deferToThread(self.start)

    def stop(self) -> None:
        """Terminate anvil and wait for it (kill after 5 s); safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._close_output()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Anvil {self.url if self.port else 'not started'}>"
