"""``python -m encoding_core ...``: see :mod:`encoding_core.cli`."""
import sys

from encoding_core.cli import main

sys.exit(main())
