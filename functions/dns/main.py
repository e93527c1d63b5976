"""dns: reconciles node and deployment records with the DNS provider.

Not built yet: every request answers 501 until the dns issue lands.
"""

from common.http import Api, HttpError
from common.log import setup_logging

setup_logging("dns")
api = Api("dns")


@api.route("/<path:rest>", methods=("GET", "POST", "PUT", "DELETE"))
@api.route("/", methods=("GET", "POST", "PUT", "DELETE"))
def not_implemented(request, rest=""):
    raise HttpError("the dns function is not implemented yet", 501)


def dns(request):
    return api(request)
