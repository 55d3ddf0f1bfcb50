"""``python -m mvspin`` (and ``torchrun -m mvspin``): the ``mvspin`` command."""
import sys

from mvspin.cli.main import main

sys.exit(main())
