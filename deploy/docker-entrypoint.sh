#!/bin/sh
# The container's first run writes the configuration into the data volume with
# `confidant init` (never over an existing one); every run then starts the command given.
#
#   CONFIDANT_HOMESERVER_URL   the homeserver as the container reaches it (http://synapse:8008)
#   CONFIDANT_BOT              the bot's Matrix id (@confidant:example.org)
#   CONFIDANT_SYNAPSE_ADMIN_TOKEN  optional: a server admin's token, to create and exempt the bot
set -eu
config=/var/lib/confidant/config.yaml
if [ "${1:-}" = "run" ] && [ ! -f "$config" ]; then
    : "${CONFIDANT_HOMESERVER_URL:?set CONFIDANT_HOMESERVER_URL}" "${CONFIDANT_BOT:?set CONFIDANT_BOT}"
    # The data directory is in the volume (the config's directory), listeners on all of the
    # container's interfaces (the compose file publishes them on loopback only), the admin
    # token in a private file rather than in the container's log.
    confidant init -c "$config" \
        --homeserver "$CONFIDANT_HOMESERVER_URL" --bot "$CONFIDANT_BOT" \
        --data-dir data --listen-host 0.0.0.0 \
        --database-url "${CONFIDANT_DATABASE_URL:-file:/run/secrets/confidant_db_url}" \
        --admin-token-file /var/lib/confidant/first-admin-token
fi
exec tini -- confidant "$@"
