"""Configuration: the YAML schema, presets of known providers, and loading."""
