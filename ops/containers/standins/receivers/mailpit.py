#!/usr/bin/python3
"""A stand-in for Mailpit: an SMTP receiver on :1025 that keeps every message
(no TLS, no authentication, like Mailpit's defaults), and on :8025
/readyz and /api/v1/messages (the count and each message's envelope).

  /mailpit           serve
  /mailpit readyz    the health check: exit 0 when :8025/readyz answers
"""

import socketserver
import sys
import threading

sys.path.insert(0, "/opt/standin")
from receiver import as_json, probe, run_until_stopped, serve_http, text  # noqa: E402

LOCK = threading.Lock()
MESSAGES = []  # dicts: from, to, size


class Smtp(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 mailpit stand-in ESMTP")
        sender, recipients = "", []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            verb = line.decode("utf-8", "replace").strip()
            upper = verb.upper()
            if upper.startswith(("EHLO", "HELO")):
                self.reply("250-mailpit stand-in")
                self.reply("250 8BITMIME")
            elif upper.startswith("MAIL FROM:"):
                sender, recipients = verb[10:].strip(), []
                self.reply("250 OK")
            elif upper.startswith("RCPT TO:"):
                recipients.append(verb[8:].strip())
                self.reply("250 OK")
            elif upper == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                size = 0
                while True:
                    data = self.rfile.readline(1 << 20)
                    if not data or data in (b".\r\n", b".\n"):
                        break
                    size += len(data)
                with LOCK:
                    MESSAGES.append({"from": sender, "to": recipients, "size": size})
                self.reply("250 OK: queued")
            elif upper == "RSET":
                sender, recipients = "", []
                self.reply("250 OK")
            elif upper == "NOOP":
                self.reply("250 OK")
            elif upper == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


def get(path, _query, _body, _headers):
    if path == "/readyz":
        return text("ok\n")
    if path == "/api/v1/messages":
        with LOCK:
            return as_json({"total": len(MESSAGES), "messages": list(MESSAGES)})
    return text("not found\n", 404)


def main():
    if sys.argv[1:] == ["readyz"]:
        sys.exit(probe("http://127.0.0.1:8025/readyz"))
    server = socketserver.ThreadingTCPServer(("0.0.0.0", 1025), Smtp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve_http(8025, get=get, name="mailpit stand-in")
    run_until_stopped()


if __name__ == "__main__":
    main()
