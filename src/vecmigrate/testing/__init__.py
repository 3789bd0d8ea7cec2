"""The conformance kit: the one suite every connector passes, shipped so that a connector
in another package (registered under the ``vecmigrate.connectors`` entry point) is tested
exactly like the built-in ones. Needs pytest (``pip install 'vecmigrate[testing]'``).

Subclass ``ConnectorConformance`` in a test module and provide a ``connector`` fixture that
yields an open connector on a real engine; see docs/writing-a-connector.md.
"""

from vecmigrate.testing.data import ROWS, sample_batch, sample_schema
from vecmigrate.testing.safety import SafetyConformance, storage_fingerprint
from vecmigrate.testing.suite import ConnectorConformance

__all__ = [
    "ROWS",
    "ConnectorConformance",
    "SafetyConformance",
    "sample_batch",
    "sample_schema",
    "storage_fingerprint",
]
