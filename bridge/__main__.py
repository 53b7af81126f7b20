"""`python -m bridge` runs the Confidant command line."""

from bridge.cli import main

raise SystemExit(main())
