"""``python -m flightbook.contracts.envelope``: print the JSON Schema of the envelope."""

import sys

from flightbook.contracts.envelope import schema_json

sys.stdout.write(schema_json())
