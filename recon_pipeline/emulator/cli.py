"""The emulator's command line, on its own: `python -m recon_pipeline.emulator [--port 12111] ...`.

It imports nothing of recon-pipeline beyond the emulator (no Dagster, no pandas), so another
project's tests can run it as a Stripe stand-in; `recon-pipeline emulator` takes the same flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon_pipeline.emulator.faults import FAULT_FIELDS, Faults

HOST, PORT = "127.0.0.1", 12111  # settings.EMULATOR_HOST/PORT, written apart so the emulator imports nothing else (a test holds them equal)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default=HOST, help="address to bind")
    parser.add_argument("--port", type=int, default=PORT, help="port to listen on")
    parser.add_argument("--state", help="SQLite file that keeps the emulator's state across restarts (default: in memory)")
    parser.add_argument("--rate-limit", type=float, help="global requests/s before answering 429 (default: none)")
    parser.add_argument("--endpoint-rate-limit", type=float, help="requests/s per endpoint before answering 429 (default: none)")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="fraction of requests answered 500")
    parser.add_argument("--latency-ms", type=int, default=0, help="latency added to every API request")
    parser.add_argument("--slow-rate", type=float, default=0.0, help="fraction of requests that take --slow-ms longer")
    parser.add_argument("--slow-ms", type=int, default=5000, help="how much longer a slow request takes")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction of requests whose connection is cut (before or after the work)")
    parser.add_argument("--outage", action="store_true", help="answer every API request 503")
    parser.add_argument("--retry-after", type=float, help="send Retry-After (seconds) with 429s")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, with the faults the flags name (--drop-rate -> drop_rate)."""
    from recon_pipeline.emulator.server import serve

    faults = Faults(**{name: getattr(args, name) for name in FAULT_FIELDS if hasattr(args, name)})
    if args.state:
        Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    print(f"Stripe emulator on http://{args.host}:{args.port} (state: {args.state or 'in memory'})", flush=True)
    serve(host=args.host, port=args.port, state_path=args.state, faults=faults)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recon_pipeline.emulator", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
