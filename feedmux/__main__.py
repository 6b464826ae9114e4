import sys

from feedmux.cli import main

sys.exit(main())
