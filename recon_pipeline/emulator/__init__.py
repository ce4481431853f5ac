"""The bundled Stripe emulator: a real HTTP server that answers like Stripe for the parts we use.

Products, prices and events; pagination newest first; idempotency replay; Stripe's error
bodies and status codes; fault injection (rate limits, failures, latency, outage).
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded when first used, so `recon-pipeline`'s parser (which borrows emulator/cli.py's flags)
# does not pay for the server's imports.
_WHERE = {
    "create_app": "app",
    "Faults": "faults",
    "EmulatorServer": "server",
    "ServerThread": "server",
    "serve": "server",
    "EmulatorState": "state",
}
__all__ = ["EmulatorServer", "EmulatorState", "Faults", "ServerThread", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recon_pipeline.emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(f"recon_pipeline.emulator.{_WHERE[name]}"), name)
