"""The ``/v1`` and ``/api`` handlers: parse, call a service or the gateway, render."""
