"""The bundled Stripe emulator: a real HTTP server that answers like Stripe for the parts we use.

Products, prices and events; pagination newest first; idempotency replay; Stripe's error
bodies and status codes; fault injection (rate limits, failures, latency, outage).
"""

from recon_pipeline.emulator.app import create_app
from recon_pipeline.emulator.faults import Faults
from recon_pipeline.emulator.server import EmulatorServer, ServerThread, serve
from recon_pipeline.emulator.state import EmulatorState

__all__ = ["EmulatorServer", "EmulatorState", "Faults", "ServerThread", "create_app", "serve"]
