"""Reference server for tests/tests/presidio_parity.rs: presidio-anonymizer's app.py (Flask,
which is in Presidio's repository, not in its wheel) rebuilt on http.server over the PyPI
package alone.

    python3 -m venv venv && venv/bin/pip install presidio-anonymizer==2.2.366   (scripts/infra.sh)
    venv/bin/python presidio_anonymizer_server.py [PORT]   # 127.0.0.1 only; 0 = a free port

Prints `listening on <port>` once bound. Same routes, status codes and bodies, byte for byte, as
Flask 3.x running app.py (checked against Flask's test client on 77 requests when written).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from presidio_anonymizer import AnonymizerEngine, DeanonymizeEngine
from presidio_anonymizer.entities import InvalidParamError
from presidio_anonymizer.services.app_entities_convertor import AppEntitiesConvertor

ANON, DEANON = AnonymizerEngine(), DeanonymizeEngine()
BAD_REQUEST = "The browser (or proxy) sent a request that this server could not understand."
NOT_FOUND = ("The requested URL was not found on the server. If you entered the URL manually "
             "please check your spelling and try again.")
NOT_ALLOWED = "The method is not allowed for the requested URL."
NOT_JSON = ("Did not attempt to load JSON data because the request Content-Type was not "
            "'application/json'.")
ROUTES = {"/health": "GET", "/anonymizers": "GET", "/deanonymizers": "GET",
          "/anonymize": "POST", "/deanonymize": "POST"}


class HttpError(Exception):
    def __init__(self, code, message):
        self.code, self.message = code, message


def flask_json(obj):  # flask.jsonify: compact, sorted keys, ASCII, trailing newline
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode() + b"\n"


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json_body(self):  # flask.Request.get_json()
        mimetype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not (mimetype == "application/json" or
                (mimetype.startswith("application/") and mimetype.endswith("+json"))):
            raise HttpError(415, NOT_JSON)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw)
        except ValueError:  # includes bad UTF-8 and an empty body
            raise HttpError(400, BAD_REQUEST)

    def _handle(self, method):
        path = self.path.split("?")[0]
        try:
            if path not in ROUTES:
                raise HttpError(404, NOT_FOUND)
            if ROUTES[path] != method:
                raise HttpError(405, NOT_ALLOWED)
            if path == "/health":
                return self._send(200, b"Presidio Anonymizer service is up", "text/html; charset=utf-8")
            if path == "/anonymizers":
                return self._send(200, flask_json(ANON.get_anonymizers()))
            if path == "/deanonymizers":
                return self._send(200, flask_json(DEANON.get_deanonymizers()))
            content = self._json_body()
            if not content:
                raise HttpError(400, "Invalid request json")
            if path == "/anonymize":
                operators = AppEntitiesConvertor.operators_config_from_json(content.get("anonymizers"))
                if AppEntitiesConvertor.check_custom_operator(operators):
                    raise HttpError(400, "Custom type anonymizer is not supported")
                results = AppEntitiesConvertor.analyzer_results_from_json(content.get("analyzer_results"))
                out = ANON.anonymize(text=content.get("text", ""), analyzer_results=results,
                                     operators=operators)
            else:
                text = content.get("text", "")
                entities = AppEntitiesConvertor.deanonymize_entities_from_json(content)
                operators = AppEntitiesConvertor.operators_config_from_json(content.get("deanonymizers"))
                out = DEANON.deanonymize(text=text, entities=entities, operators=operators)
            self._send(200, out.to_json().encode())  # EngineResult.to_json: json.dumps defaults
        except HttpError as e:
            self._send(e.code, flask_json({"error": e.message}))
        except InvalidParamError as e:
            self._send(422, flask_json({"error": e.err_msg}))
        except Exception:  # noqa: BLE001 - app.py's catch-all
            self._send(500, flask_json({"error": "Internal server error"}))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
