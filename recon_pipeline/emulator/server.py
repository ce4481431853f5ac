"""Running the emulator: `serve()` for the CLI, `EmulatorServer` in a thread for tests and the demo."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from recon_pipeline.emulator.accounts import AccountRouter, state_path_of
from recon_pipeline.emulator.app import create_app
from recon_pipeline.emulator.faults import Faults
from recon_pipeline.emulator.state import EmulatorState


def create_emulator(state: EmulatorState, faults: Faults, validate_responses: bool = False) -> AccountRouter:
    """The emulator's own account (`state`, `faults`) and any other account a request addresses,
    each made on first use with a state of its own (beside `state.path` when it has one)."""
    states = [state]

    def make(account: str, connected: bool):
        other = EmulatorState(state_path_of(state.path, account))
        states.append(other)
        return create_app(other, Faults(), validate_responses, connected_id=account if connected else None)

    return AccountRouter(create_app(state, faults, validate_responses), make, states)


def _config(app, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off", http="httptools")


def serve(host: str = "127.0.0.1", port: int = 12111, state_path: str | None = None, faults: Faults | None = None, log_level: str = "warning") -> None:
    """Run the emulator in the foreground until interrupted."""
    router = create_emulator(EmulatorState(state_path), faults or Faults())
    try:
        uvicorn.Server(_config(router, host, port, log_level)).run()
    finally:
        for state in router.states:
            state.close()


class ServerThread:
    """Any ASGI app on a real port, served by uvicorn from a background thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or free_port(host)
        self.app = app
        self._server = uvicorn.Server(_config(app, self.host, self.port, "warning"))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.run, name=f"asgi-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url} (is the port in use?)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class EmulatorServer(ServerThread):
    """The emulator on a real port, served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state_path: str | None = None, faults: Faults | None = None, validate_responses: bool = False):
        self.state = EmulatorState(state_path)
        self.faults = faults or Faults()
        super().__init__(create_emulator(self.state, self.faults, validate_responses), host, port)

    @property
    def problems(self) -> list[str]:
        """Where the bodies it answered, in any account, differ from the spec (with `validate_responses`)."""
        return [problem for app in list(self.app.apps.values()) for problem in app.state.problems or []]

    def account(self, account_id: str):
        """Another account's app (`.state.account`, `.state.faults`), made if it was never addressed."""
        return self.app.app_for(account_id)

    def stop(self) -> None:
        super().stop()
        for state in self.app.states:
            state.close()


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
