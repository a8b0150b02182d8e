"""``python -m ocrobin`` (also what ``torchrun -m ocrobin train`` runs)."""

import sys

from .cli import main

sys.exit(main())
