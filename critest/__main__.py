import sys

from critest.cli import main

sys.exit(main())
