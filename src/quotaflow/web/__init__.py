"""The HTTP surface: ``/v1`` (OpenAI-compatible proxy), ``/api`` (management), ``/`` (dashboard)."""
