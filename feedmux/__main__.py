import sys

from feedmux.ops.cli import main

sys.exit(main())
