"""``python -m gemserve.engine.llama``: the start-up self-check in a process of its own
(selfcheck.py), for set-up and the tests: a fatal signal kills only this child."""

import sys

from gemserve.engine.llama.selfcheck import main

sys.exit(main())
