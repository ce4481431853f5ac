"""`python -m recon_pipeline.emulator`: the Stripe emulator alone (see emulator/cli.py)."""

import sys

from recon_pipeline.emulator.cli import main

sys.exit(main())
