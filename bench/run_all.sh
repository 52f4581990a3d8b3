#!/bin/sh
# Every scenario (cc, refresh, flow, jwks, introspection) x {SQLite, PostgreSQL} x {1, 2 workers},
# one after the other, then one markdown table on stdout (progress on stderr).
# PostgreSQL runs only when --postgres-url (postgresql://root@127.0.0.1:5432/test) answers;
# each of its runs gets a database of its own, created before and dropped after.
#
#   bench/run_all.sh --seconds 10
#   bench/run_all.sh --seconds 10 --scenario cc,refresh --matrix-workers 1
#   PYTHON=/path/to/python bench/run_all.sh --seconds 10 --json
#
# Any other option goes to bench/token_bench.py --matrix (see its --help).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../.venv/bin/python}
exec "$python" "$here/token_bench.py" --matrix "$@"
