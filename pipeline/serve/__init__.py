"""``heal serve``: the HTTP API, the Prometheus ``/metrics`` endpoint and the web dashboard.

Standard library only (``http.server.ThreadingHTTPServer``): the API is a handful of JSON
routes, so a web framework would add a dependency and nothing else.
"""

from pipeline.serve.server import make_server

__all__ = ["make_server"]
