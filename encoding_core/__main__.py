"""``python -m encoding_core ...``: see :mod:`encoding_core.cli`."""
import sys

from .cli import main

sys.exit(main())
