"""Read models over the ledger: usage, burn, forecast, export, and their collection."""
