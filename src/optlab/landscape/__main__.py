"""`python -m optlab.landscape`; see optlab/landscape/cli.py for the options."""

import sys

from optlab.landscape.cli import main

sys.exit(main())
