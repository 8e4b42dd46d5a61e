"""The container healthcheck: `python -m fraudcore.healthcheck`.

GET http://127.0.0.1:$METRICS_PORT/health (fraudcore/health.py) with a short timeout. Exit 0
when it answers 200; exit 1 otherwise (a 503, no answer, no server, or no METRICS_PORT), with one
line on stderr that says which. Standard library only, and nothing of the service is imported:
it runs every few seconds next to the service, so it must start fast and touch nothing else.

A module instead of `python -c "..."`: an exec-form healthcheck argument that holds spaces is
split on whitespace by some engines (podman's Docker API, containers/podman#26519).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def check(port_setting: str | None, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str]:
    """(exit status, one line) for the /health endpoint on METRICS_PORT=`port_setting`."""
    port_text = (port_setting or "").strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return 1, f"unhealthy: METRICS_PORT={port_setting!r}, so no /health to ask"
    url = f"http://127.0.0.1:{int(port_text)}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return 1, f"unhealthy: {url} answered {exc.code}"
    except OSError as exc:
        return 1, f"unhealthy: {url} did not answer: {exc}"
    if status != 200:
        return 1, f"unhealthy: {url} answered {status}"
    return 0, f"healthy: {url} answered 200"


def main() -> int:
    code, line = check(os.environ.get("METRICS_PORT"))
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
