#!/usr/bin/env bash
# Restore a backup made by backup.sh into a fresh data directory.
#
#   deploy/restore.sh ARCHIVE.tar.gz NEW_DATA_DIR [POSTGRESQL_URL]
#
# NEW_DATA_DIR must not exist or be empty: a restore never overwrites a live bridge.
# Every file is checked against the archive's MANIFEST and every SQLite database
# with `PRAGMA integrity_check`. With a PostgreSQL URL (an empty database) the dump in
# the archive is loaded into it with pg_restore. Then point `data_dir` (and
# `database.url`) of the configuration at the restored copy, with the same secrets as
# before, and start the bridge: it keeps its device, keys and history.
set -euo pipefail
umask 077

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 ARCHIVE.tar.gz NEW_DATA_DIR [POSTGRESQL_URL]" >&2
    exit 2
fi
archive=$1
target=$2
pg_url=${3:-}
python=${PYTHON:-python3}

if [[ -e $target && -n $(ls -A "$target" 2>/dev/null) ]]; then
    echo "$0: $target is not empty; restore into a fresh directory" >&2
    exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tar -C "$stage" -xzf "$archive"
if [[ ! -f $stage/MANIFEST ]]; then
    echo "$0: $archive has no MANIFEST; is it a Confidant backup?" >&2
    exit 1
fi
(cd "$stage" && sha256sum --check --quiet MANIFEST) || {
    echo "$0: $archive is damaged (a file does not match its MANIFEST)" >&2
    exit 1
}

"$python" - "$stage/data" <<'PY'
import sqlite3
import sys
from pathlib import Path

bad = []
for path in sorted(Path(sys.argv[1]).rglob("*")):
    if path.is_file() and path.open("rb").read(16) == b"SQLite format 3\x00":
        conn = sqlite3.connect(path)
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        if result != "ok":
            bad.append(f"{path.name}: {result}")
if bad:
    sys.exit("restore: SQLite integrity check failed: " + "; ".join(bad))
PY

if [[ -f $stage/database.dump ]]; then
    if [[ -z $pg_url ]]; then
        echo "$0: the archive holds a PostgreSQL dump; give the URL of an empty database" >&2
        exit 1
    fi
    pg_restore --no-owner --exit-on-error --dbname="$pg_url" "$stage/database.dump"
fi

mkdir -p "$target"
chmod 700 "$target"
cp -a "$stage/data/." "$target/"
echo "restored into $target; set data_dir: $target in the configuration" >&2
