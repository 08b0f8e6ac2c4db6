"""``python -m wecross.console``: the console without the ``wecross`` entry point (tests spawn it this way)."""

from __future__ import annotations

import sys

from wecross.console.app import main

if __name__ == "__main__":
    sys.exit(main())
