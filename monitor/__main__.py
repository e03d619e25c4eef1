"""``python -m monitor`` runs the command line."""

import sys

from monitor import lifecycle

lifecycle.install()  # before importing the CLI and its dependencies: a SIGTERM from the first moment exits 0

from monitor.cli import main  # noqa: E402 - after the signal handlers, on purpose

sys.exit(main())
