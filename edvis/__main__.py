import sys

from edvis.cli import main

sys.exit(main())
