"""moto's server application over HTTPS, for STS AssumeRoleWithWebIdentity.

Usage: moto_sts.py HOST PORT CERT KEY

moto's dispatcher finds the service of an unsigned request from its form body
(Action=...); object_store sends AssumeRoleWithWebIdentity's parameters in the query
string, which AWS STS accepts as well. Such a POST without a body gets its query copied
into a form body (the query stays, so moto's recorder shows the parameters); everything
else reaches moto as it came.
"""

import io
import sys

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

moto = DomainDispatcherApplication(create_backend_app)


def query_as_form(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    empty = not int(environ.get("CONTENT_LENGTH") or 0)
    if environ["REQUEST_METHOD"] == "POST" and "Action=" in query and empty:
        body = query.encode()
        environ.update(
            {
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
            }
        )
    return moto(environ, start_response)


host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
run_simple(host, port, query_as_form, threaded=True, ssl_context=(cert, key))
