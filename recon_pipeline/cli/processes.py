"""The processes the CLI starts: the emulator, Dagster's servers, and their supervision.

`dev` and `serve` both start a few long-running children (the emulator when no Stripe key
is set, then `dagster-webserver` and `dagster-daemon`) and must stop
them all, cleanly, on Ctrl-C or SIGTERM, or as soon as one of them dies: `Supervisor`
does that, once for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from recon_pipeline.settings import DATA_DIR, EMULATOR_HOST, EMULATOR_PORT, PROJECT_ROOT, Settings, SettingsError, emulator_notice, emulator_url

EMULATOR_STATE = DATA_DIR / "stripe-emulator.db"
STOP_GRACE_S = 5.0  # how long children get to stop on their own after Ctrl-C, before the rest is killed


def dagster_home(configured: Path | None, default: Path, config: Path) -> Path:
    """DAGSTER_HOME: the configured one, or `default` kept in step with the project's `config`.

    The project's default home takes the project's dagster.yaml each time it changed (an
    edit to ./dagster.yaml applies at the next start); a DAGSTER_HOME of the user's own gets
    it only when it has none, and keeps its own after that.
    """
    home = (configured or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if config.exists() and (not target.exists() or (configured is None and target.read_bytes() != config.read_bytes())):
        if target.exists():
            print(f"{config.name} changed: copied into {home}", file=sys.stderr)
        shutil.copy(config, target)
    return home


def instance_home(settings: Settings) -> Path:
    """The deployment's Dagster instance (`Settings.instance_home`), ready, and said on stderr: every
    command that records runs says where, so the UI of the same deployment is easy to find."""
    home = dagster_home(settings.dagster_home, settings.instance_home, settings.instance_config)
    print(f"recon-pipeline: Dagster instance DAGSTER_HOME={home}", file=sys.stderr, flush=True)
    return home


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def emulator_is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/faults", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_emulator(port: int, state_path: Path = EMULATOR_STATE) -> Iterator[str]:
    """The emulator at 127.0.0.1:port: the one already running there, or one started in this process."""
    url = emulator_url(port)
    if emulator_is_up(url):
        yield url
        return
    from recon_pipeline.emulator import EmulatorServer

    state_path.parent.mkdir(parents=True, exist_ok=True)
    with EmulatorServer(host=EMULATOR_HOST, port=port, state_path=str(state_path)) as server:
        yield server.url


def connect_accounts(url: str, settings: Settings) -> None:
    """On the bundled emulator, the connected accounts RECON_STRIPE_ACCOUNTS names (acct_...) are
    connected to the platform, as they are on the user's Stripe (the emulator refuses others)."""
    for account in settings.accounts:
        if account.connected_id:
            httpx.post(f"{url}/_emulator/accounts", json={"id": account.connected_id}, timeout=5).raise_for_status()


def with_stripe(settings: Settings, stack: contextlib.ExitStack) -> Settings:
    """The settings a command calls Stripe with: on the embedded default (no key, no
    STRIPE_API_BASE), the bundled emulator, started in this process if none runs."""
    if not settings.uses_emulator:
        return settings
    if "STRIPE_API_BASE" not in settings.set_in_env:
        settings = dataclasses.replace(settings, stripe_api_base=stack.enter_context(running_emulator(EMULATOR_PORT)))
        connect_accounts(settings.stripe_api_base, settings)
    print(f"recon-pipeline: note: {emulator_notice(settings.stripe_api_base)}", file=sys.stderr, flush=True)
    return settings


class Supervisor:
    """Long-running children started together and stopped together."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}
        self._stopping = False

    def start(self, argv: Sequence[str], env: dict[str, str], cwd: Path = PROJECT_ROOT) -> subprocess.Popen:
        """A child in a session of its own: a terminal's Ctrl-C (or hang-up) reaches only the
        supervisor, which stops each child in turn, so a run the daemon is just launching is
        not cut off mid-start by the same signal."""
        child = subprocess.Popen(list(argv), env=env, cwd=cwd, start_new_session=True)
        self.children.append(child)
        self.names[child.pid] = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv[:4]))
        return child

    def start_emulator(self, port: int, env: dict[str, str]) -> str:
        """The emulator on 127.0.0.1:port as a child (unless one already answers there); returns its URL."""
        url = emulator_url(port)
        if not emulator_is_up(url):
            if port_in_use(EMULATOR_HOST, port):
                raise SettingsError(f"port {port} on {EMULATOR_HOST} is in use by something that is not the emulator; pick another with --emulator-port")
            EMULATOR_STATE.parent.mkdir(parents=True, exist_ok=True)
            self.start([sys.executable, "-m", "recon_pipeline.cli", "emulator", "--port", str(port), "--state", str(EMULATOR_STATE)], env)
            deadline = time.monotonic() + 10
            while not emulator_is_up(url) and time.monotonic() < deadline:
                time.sleep(0.1)
        return url

    def _stop_soon(self, *_: object) -> None:
        self._stopping = True

    def wait(self) -> int:
        """Until Ctrl-C, SIGTERM, a hang-up or a child's exit; then every child is stopped. 0 unless a child failed."""
        previous = {sig: signal.signal(sig, self._stop_soon) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        status = 0
        try:
            while not self._stopping:
                for child in self.children:
                    if child.poll() is not None:
                        if child.returncode != 0:
                            print(f"recon-pipeline: {self.names[child.pid]} exited with {child.returncode}; stopping", file=sys.stderr)
                            status = 1
                        self._stopping = True
                time.sleep(0.2)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def stop(self) -> None:
        """Each child asked to stop (SIGTERM: dagster shuts its servers down as on Ctrl-C) and
        given a few seconds; then whatever is left of each child's process group (a code server
        that ignores SIGTERM, as they can for minutes) is killed, so Ctrl-C returns within
        seconds and leaves no process behind."""
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        gone_by = time.monotonic() + 2.0
        while any(_group_alive(child.pid) for child in self.children) and time.monotonic() < gone_by:
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
