"""``python -m dspark.cli`` (and ``torchrun -m dspark.cli``) runs the ``dspark`` command."""

import sys

from dspark.cli import main

sys.exit(main())
