"""Shared core of the generator and detector services.

The pure modules (`model`, `codec`, `rule`, `pacing`) import nothing from Kafka and are
unit-tested without a broker; `kafka_io`, `config` and `runtime` are the thin shell around them.
"""

import logging

# A library never configures logging; the services' main() does (see runtime.configure_logging).
logging.getLogger(__name__).addHandler(logging.NullHandler())
