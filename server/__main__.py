"""`python -m tunewire.server`: the same as `tunewire serve`."""

import sys

from tunewire.server.cli import main

sys.exit(main())
