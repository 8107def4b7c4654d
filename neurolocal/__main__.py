"""``python -m neurolocal ...`` (what ``torchrun -m neurolocal`` runs): the CLI."""

import sys

from neurolocal.app.cli import main

sys.exit(main())
