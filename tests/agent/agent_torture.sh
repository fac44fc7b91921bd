#!/bin/bash
# The agent's torture suite (tests/agent/agent_torture.py): scripted hostile SMTP
# servers on loopback, the outcome invariant checked on every slot.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || skip "openssl not installed"
$PY "$HERE/agent_torture.py" "$AGENT" "$WORK"
