"""Features built on the gateway's public verbs (seed features, access, key management)."""
