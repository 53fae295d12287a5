"""Sends a trace and a custom event to the sandbox's Application Insights double with the
official exporter, azure-monitor-opentelemetry-exporter (tests/it/app_insights.rs).

    python app_insights.py CONNECTION_STRING

The exporter posts to the connection string's IngestionEndpoint (`/v2.1/track`) over the
double's TLS (the sandbox CA through REQUESTS_CA_BUNDLE). Each record is exported as it is
emitted (SimpleLogRecordProcessor); the export result of each is printed as one JSON object on
stdout. The double's own record of what it accepted is what the test compares.
"""

import json
import logging
import os
import sys

# No calls to Microsoft's endpoints (statsbeat, the SDK's own usage statistics).
os.environ["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"
os.environ["APPLICATIONINSIGHTS_SDKSTATS_DISABLED"] = "true"

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402


class Recording(AzureMonitorLogExporter):
    """The official exporter, keeping the result of each export."""

    results = []

    def export(self, batch, **kwargs):
        result = super().export(batch, **kwargs)
        Recording.results.append(result == LogRecordExportResult.SUCCESS)
        return result


def main():
    connection_string = sys.argv[1]
    # The exporter says why an export failed on its own logger: to stderr, for the test's message.
    diagnostics = logging.getLogger("azure.monitor.opentelemetry.exporter")
    diagnostics.addHandler(logging.StreamHandler(sys.stderr))
    diagnostics.setLevel(logging.INFO)
    exporter = Recording(connection_string=connection_string, disable_offline_storage=True)
    provider = LoggerProvider(resource=Resource.create({"service.name": "oracle-role"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("oracle")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    logger.warning(
        "target failed", extra={"app": "OracleApp", "code": "Forbidden", "run_id": "oracle-run"}
    )
    logger.info(
        "rotation run finished",
        extra={"microsoft.custom_event.name": "RunEnded", "failed": "1", "run_id": "oracle-run"},
    )
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"exports": Recording.results}))
    if not all(Recording.results) or len(Recording.results) != 2:
        sys.exit("the exporter reported a failed export")


if __name__ == "__main__":
    main()
