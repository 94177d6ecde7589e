"""Reading a server's `/metrics` in tests and benchmarks."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def operations(server, operation: str, outcome: str = "ok") -> float:
    """How many `operation`s (e.g. `blob_upload`, `blob_download`) with `outcome` the server
    timed (`alcove_operation_duration_seconds_count`)."""
    for family in text_string_to_metric_families(server.api("GET", "/metrics").text):
        for s in family.samples:
            if (s.name == "alcove_operation_duration_seconds_count"
                    and s.labels.get("operation") == operation and s.labels.get("outcome") == outcome):
                return s.value
    return 0.0
