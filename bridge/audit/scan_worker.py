"""One range of the audit chain scanned in a process of its own (`bridge.audit.fastscan`).

Reads `(path, first, last, marks_at, sealer)` pickled on stdin from the parent verifier and
writes the `RangeScan` pickled on stdout; nothing else is read or written.
"""

from __future__ import annotations

import pickle
import sys

from bridge.audit.fastscan import scan_file_range


def main() -> None:
    path, first, last, marks_at, sealer = pickle.loads(sys.stdin.buffer.read())
    scan = scan_file_range(path, first, last, marks_at, sealer)
    sys.stdout.buffer.write(pickle.dumps(scan))


if __name__ == "__main__":
    main()
