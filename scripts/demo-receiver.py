#!/usr/bin/env python3
"""The demo's Alertmanager webhook receiver: appends every POST (path and
JSON body) as one line to the log file, answers 200. Loopback only.

usage: demo-receiver.py PORT LOGFILE
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, LOG = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = min(int(self.headers.get("Content-Length", 0)), 1 << 20)
        body = self.rfile.read(length).decode("utf-8", "replace")
        try:
            payload = json.loads(body)
            alerts = [
                f"{a.get('status')}:{a.get('labels', {}).get('alertname')}"
                f"{{check={a.get('labels', {}).get('check', '')}}}"
                for a in payload.get("alerts", [])
            ]
        except ValueError:
            alerts = ["(not JSON)"]
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {self.path} {' '.join(alerts)}\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
