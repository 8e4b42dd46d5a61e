"""Where each record goes, and with which headers: the detector's per-record work.

Legit and fraud records are forwarded byte for byte (key and value); a fraud record carries
fraud.rules, the rules that fired, and a record's own fraud.rules is never passed on, so that
header is always the detector's. A dead letter carries why it is invalid and where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from detector.clients import output_topics
from detector.config import DetectorSettings
from fraudcore.core.rule import (
    HEADER_RULES,
    Verdict,
    dead_letter_headers,
    without_rules_header,
)
from fraudcore.core.rules.ruleset import PartitionRules
from fraudcore.kafka.types import ConsumedRecord, Output


class Tally(Protocol):
    """Told of every record routed: verdict, input timestamp, dead-letter reason, fraud.rules
    (fraudcore.checkpoint.BatchTally)."""

    def routed(
        self, verdict: Verdict, timestamp_ms: int | None, reason: str = "", rules: bytes = b""
    ) -> None: ...


class Router:
    """Classifies records and makes their outputs, telling a tally of each one."""

    def __init__(self, settings: DetectorSettings) -> None:
        self._topics = output_topics(settings)
        self._max_bytes = settings.max_transaction_bytes

    def outputs(
        self, records: Sequence[ConsumedRecord], tally: Tally, rules: PartitionRules
    ) -> list[Output]:
        """Each record of one partition's poll with its topic and headers, each told to `tally`;
        `rules`: the partition's rule state, which counts each record in offset order. The loops
        run per record: what they need is looked up once, before them. All verdicts first, then
        the outputs: two tight loops run measurably faster than one that alternates."""
        classify, max_bytes = rules.classify, self._max_bytes
        verdicts = [classify(r.value, r.timestamp, r.offset, max_bytes) for r in records]
        topics, routed = self._topics, tally.routed
        invalid, fraud = Verdict.INVALID, Verdict.FRAUD
        outputs: list[Output] = []
        for record, result in zip(records, verdicts, strict=True):
            verdict, headers = result.verdict, record.headers
            if verdict is invalid:
                headers = dead_letter_headers(
                    headers, result.reason, record.topic, record.partition, record.offset
                )
            elif verdict is fraud:  # the rules that fired, and only ours
                headers = [*without_rules_header(headers), (HEADER_RULES, result.rules)]
            elif headers:
                headers = without_rules_header(headers)
            outputs.append((topics[verdict], record.key, record.value, headers))
            routed(verdict, record.timestamp, result.reason, result.rules)
        return outputs
