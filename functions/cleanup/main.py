"""cleanup: times out stuck nodes, tears down what was deleted or orphaned.

Not built yet: every request answers 501 until the cleanup issue lands.
"""

from common.http import Api, HttpError
from common.log import setup_logging

setup_logging("cleanup")
api = Api("cleanup")


@api.route("/<path:rest>", methods=("GET", "POST", "PUT", "DELETE"))
@api.route("/", methods=("GET", "POST", "PUT", "DELETE"))
def not_implemented(request, rest=""):
    raise HttpError("the cleanup function is not implemented yet", 501)


def cleanup(request):
    return api(request)
