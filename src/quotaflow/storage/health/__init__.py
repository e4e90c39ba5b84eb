"""Key health shared by replicas: the store protocol with its merge rules, and Redis."""
