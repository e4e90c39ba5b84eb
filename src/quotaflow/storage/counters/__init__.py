"""Counter stores: memory (one process) and Redis (shared by replicas), with the rebuild
from the ledger."""
