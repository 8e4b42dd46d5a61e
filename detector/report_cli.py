"""What the detector's read-only report commands (the audit, the backtest) share: a read
timeout flag, quiet logging beside a report on stdout, and a first wait for the broker."""

from __future__ import annotations

import argparse

from fraudcore import kafka
from fraudcore.config import CommonSettings
from fraudcore.runtime import StopFlag, configure_logging


def add_read_timeout(parser: argparse.ArgumentParser, default: float) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=default,
        help="give up reading after this many seconds (default %(default)g)",
    )


def quiet_logging(settings: CommonSettings) -> None:
    """The report goes to stdout; only warnings and errors go to stderr unless LOG_LEVEL=DEBUG."""
    level = settings.log_level if settings.log_level != "INFO" else "WARNING"
    configure_logging(level, settings.log_format)


def broker_answers(settings: CommonSettings, client_id: str) -> bool:
    """Wait, within the settings' bound, for the broker to answer; False if it never did (or a
    stop came first)."""
    admin = kafka.driver(settings).wait_for_broker(settings, StopFlag.install(), client_id)
    if admin is None:
        return False
    admin.close()
    return True
