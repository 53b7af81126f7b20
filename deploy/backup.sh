#!/usr/bin/env bash
# Back up a Confidant data directory (and its PostgreSQL database, if it uses one)
# into one archive, while the bridge runs.
#
#   deploy/backup.sh DATA_DIR ARCHIVE.tar.gz [POSTGRESQL_URL]
#
# Taken: every SQLite database (the bridge's state and the bot's crypto store) through
# SQLite's online backup, so a running bridge is captured consistently; the sealed
# cross-signing seeds (cross-signing.sealed) and every other file in DATA_DIR except the
# media cache. The bot's sessions (bot-session.json, also the witness's) are not taken: they
# hold live access tokens. Only its device id goes in (as bot-device-id), so a restored bridge logs in
# again with bot.password onto the same device, whose keys are in the crypto store. With a PostgreSQL URL the
# database is added as a pg_dump custom-format file. A MANIFEST lists every file's
# SHA-256, which restore.sh checks.
#
# Not taken: the configuration and its secrets (bot.pickle_key, audit.content_keys,
# audit.signing_key). Keep them apart from these archives: the crypto store and the
# seeds cannot be opened without the pickle key, and the archive is worthless to
# anyone who only has the archive.
set -euo pipefail
umask 077

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 DATA_DIR ARCHIVE.tar.gz [POSTGRESQL_URL]" >&2
    exit 2
fi
data_dir=$1
archive=$2
pg_url=${3:-}
python=${PYTHON:-python3}

if [[ ! -d $data_dir ]]; then
    echo "$0: $data_dir is not a directory" >&2
    exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/data"

"$python" - "$data_dir" "$stage" <<'PY'
import hashlib
import json
import shutil
import sqlite3
import sys
from pathlib import Path

source, stage = Path(sys.argv[1]), Path(sys.argv[2])
out = stage / "data"
SQLITE_HEADER = b"SQLite format 3\x00"
SKIP_SUFFIXES = ("-wal", "-shm", "-journal")
manifest = []

for path in sorted(p for p in source.rglob("*") if p.is_file()):
    rel = path.relative_to(source)
    if rel.parts[0] == "media" or path.name.endswith(SKIP_SUFFIXES):
        continue  # the media cache is rebuilt; WAL files are folded in by the online backup
    if path.name == "bot-session.json":
        # The bot's (and the witness device's) access token stays behind; the device id
        # lets the restored bridge log in onto the same device.
        device_id = json.loads(path.read_text())["device_id"]
        kept = rel.with_name("bot-device-id")
        (out / kept).parent.mkdir(parents=True, exist_ok=True)
        (out / kept).write_text(device_id)
        digest = hashlib.sha256(device_id.encode()).hexdigest()
        manifest.append(f"{digest}  data/{kept.as_posix()}")
        continue
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as fh:
        is_sqlite = fh.read(16) == SQLITE_HEADER
    if is_sqlite:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        with dst:
            src.backup(dst)
        dst.close()
        src.close()
    else:
        shutil.copy2(path, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest.append(f"{digest}  data/{rel.as_posix()}")

(stage / "MANIFEST").write_text("\n".join(manifest) + "\n")
print(f"backed up {len(manifest)} files", file=sys.stderr)
PY

if [[ -n $pg_url ]]; then
    pg_dump --format=custom --no-owner --file="$stage/database.dump" "$pg_url"
    (cd "$stage" && sha256sum database.dump >> MANIFEST)
fi

tmp_archive="$archive.partial"
tar -C "$stage" -czf "$tmp_archive" .
mv "$tmp_archive" "$archive"
echo "backup written to $archive" >&2
