"""What the server says about itself: logs, Prometheus metrics, OpenTelemetry traces.

Sits just above ``engine``/``config``: the gateway, the services and the web layer all report
through it, so it imports nothing above them. Each concern is its own module:

- :mod:`~quotaflow.observability.logs`: logging set-up (text or JSON), the access line, warning
  events that say what to do, rate-limited per subject;
- :mod:`~quotaflow.observability.metrics`: the ``prometheus_client`` families and ``/metrics``;
- :mod:`~quotaflow.observability.tracing`: spans, only when the ``otel`` extra is installed;
- :mod:`~quotaflow.observability.observer`: the one object the gateway reports to.
"""
