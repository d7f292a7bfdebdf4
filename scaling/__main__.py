"""`python -m scaling ...` (e.g. under `accelerate launch -m scaling train runs/<id>`)."""
import sys

from scaling.cli import main

sys.exit(main())
