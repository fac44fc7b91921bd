#!/usr/bin/env bash
# Runs nginx_live.sh inside a throwaway stack (PostgreSQL + kiln-api) from tests/lib.
src=${KILN_SOURCE_DIR:?}
exec bash "$src/tests/lib/with_stack.sh" "$src/tests/deploy/nginx_live.sh"
