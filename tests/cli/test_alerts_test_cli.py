"""``quotaflow alerts test`` sends one signed sample to every configured webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from click.testing import CliRunner

from quotaflow.cli.main import cli

SECRET = "cli-hook-secret"


def test_a_sample_reaches_the_receiver_signed(tmp_path: Path) -> None:
    got: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        "providers: [{name: openai, keys: [{secret: sk-cli-0001}]}]\n"
        f"notify: [{{url: 'http://127.0.0.1:{server.server_port}/hook', secret: {SECRET}}}]\n"
    )
    try:
        result = CliRunner().invoke(cli, ["alerts", "test", "--config", str(cfg)])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert "HTTP 204" in result.output
    ((headers, body),) = got
    want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-quotaflow-signature"] == f"sha256={want}"
    assert json.loads(body)["event"] == "threshold"


def test_no_webhook_configured_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "q.yaml"
    cfg.write_text("providers: [{name: openai, keys: [{secret: sk-cli-0001}]}]\n")
    result = CliRunner().invoke(
        cli, ["alerts", "test", "--config", str(cfg)], env={"QUOTAFLOW_WEBHOOK_URL": ""}
    )
    assert result.exit_code != 0
    assert "no alert webhook is configured" in result.output
