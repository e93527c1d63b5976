"""`python -m bootfleet.cli ...` is the `bootfleet` command."""

import sys

from bootfleet.cli.main import main

sys.exit(main())
