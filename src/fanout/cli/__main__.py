"""``python -m fanout.cli``: the same as the ``fanout`` command."""

import sys

from fanout.cli import main

sys.exit(main())
