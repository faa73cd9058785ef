import sys

from context8.cli import main

sys.exit(main())
