"""`python -m mcp_tasks` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
