"""The dashboard: its page and assets, the snapshot it shows, the hub that pushes it, and the
key actions it offers. Only the hub loads with the app; the rest loads on first request."""
