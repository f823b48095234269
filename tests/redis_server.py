"""A real redis-server for the tests: started on a free port, without persistence, in a temporary
directory; stopped and started again on the same port to play a Redis outage."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import free_port

STARTUP_TIMEOUT = 10.0


def installed() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`; `url` points at its database 0."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts the server and returns once it answers PING."""
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        # No persistence: what a test stored dies with the server.
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server gave no PONG within {STARTUP_TIMEOUT} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stops the server and waits for it: its port refuses connections afterwards."""
        if self._process is None:
            return
        self.resume()  # a stopped process would keep SIGTERM pending
        self._process.terminate()
        try:
            self._process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): it accepts connections and answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                answer = b""
                while not answer.endswith(b"\r\n"):
                    if not (chunk := connection.recv(64)):
                        return False
                    answer += chunk
                # "-LOADING ..." while it starts up.
                return answer == b"+PONG\r\n"
        except OSError:
            return False
