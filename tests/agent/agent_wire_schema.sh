#!/bin/bash
# The wire module's inbox bodies against api/openapi.yaml (wire_inbox_schema.py): every
# InboxEvent kind, a report with inbox_events, a lease request with max_inboxes, and the
# unit tests' lease answer fixture.
source "$(dirname "$0")/lib.sh"
$PY -c 'import jsonschema, yaml' 2>/dev/null || skip "python3-jsonschema or python3-yaml missing"
"$KILN_BUILD_DIR/tests/agent/test_agent_wire_inbox" --dump "$WORK" || fail "--dump failed"
$PY "$HERE/wire_inbox_schema.py" "$KILN_SOURCE_DIR" "$WORK"
