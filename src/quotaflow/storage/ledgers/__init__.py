"""Ledger stores: SQLite (embedded) and PostgreSQL (shared), on one SQL base."""
