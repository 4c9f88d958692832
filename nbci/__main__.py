import sys

from nbci.cli import main

sys.exit(main())
