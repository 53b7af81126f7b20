"""Settings Confidant needs in a freshly generated Synapse homeserver.yaml (run once, by the
compose file's synapse-init): PostgreSQL, registration with single-use tokens only.

    python synapse-settings.py /data/homeserver.yaml /run/secrets/synapse_db_password
"""

import sys
from pathlib import Path

import yaml

config_path, password_file = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load(config_path.read_text())
config["database"] = {
    "name": "psycopg2",
    "args": {
        "user": "synapse",
        "password": password_file.read_text().strip(),
        "dbname": "synapse",
        "host": "postgres",
        "cp_min": 5,
        "cp_max": 10,
    },
}
# Patients register with the invitation code Confidant mails them, and only with one.
config["enable_registration"] = True
config["registration_requires_token"] = True
config_path.write_text(yaml.safe_dump(config, sort_keys=False))
print(f"{config_path}: PostgreSQL, registration with tokens only")
