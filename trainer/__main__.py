"""`python -m tunewire.trainer ...` is `tunewire train ...`."""

import sys

from tunewire.trainer.cli import main

sys.exit(main())
