"""Shared core of the generator and detector services.

The pure core (`core/`: model, codec, rules, pacing) imports nothing from Kafka and is
unit-tested without a broker; `kafka/` is the Kafka port with its adapters, and `config`,
`runtime`, `checkpoint` and `error_policy` are the services' shell around the core.
"""

import logging

# A library never configures logging; the services' main() does (see runtime.configure_logging).
logging.getLogger(__name__).addHandler(logging.NullHandler())
