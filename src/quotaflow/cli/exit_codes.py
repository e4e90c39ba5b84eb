"""The exit codes every command shares, and their ``--help`` text.

A module of its own, without imports, so ``quotaflow --help`` and ``quotaflow serve`` show
them without loading the output helpers (rich, the configuration schema)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EXIT_CODES_HELP = """\b
Exit codes: 0 ok; 1 operational failure (a failed key test, a forecast blackout, a
refused server request); 2 usage or configuration error; 3 server unreachable.
Commands with a --url option use the server at --url / $QUOTAFLOW_URL when given,
else the data folder (--home / $QUOTAFLOW_HOME / ./.quotaflow); the others (report,
forecast, backup, ...) work on the data folder only."""
