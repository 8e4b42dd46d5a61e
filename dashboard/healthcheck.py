"""The dashboard container's healthcheck: `python -m dashboard.healthcheck`.

GET http://127.0.0.1:$DASHBOARD_PORT/health, through the services' probe (fraudcore/healthcheck.py):
exit 0 when the page's server answers 200, else 1 with one line. The page's server answers 200
while it runs, whether the broker answers or not: the page itself says when the broker is away.
"""

from __future__ import annotations

import os
import sys

from fraudcore.healthcheck import check

DEFAULT_PORT = "8088"


def main() -> int:
    code, line = check(os.environ.get("DASHBOARD_PORT") or DEFAULT_PORT)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
