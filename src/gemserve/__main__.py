import sys

from gemserve.cli import main

sys.exit(main())
