import sys

from recon_pipeline.cli import main

sys.exit(main())
