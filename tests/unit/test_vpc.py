"""The IBM client without a server: Retry-After as the API sends it, and the error code and
trace id of each API's error shape."""

import datetime

from bootfleet.providers.ibmcloud import retry_after as _retry_after


def test_retry_after_as_an_http_date():
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    assert 28 <= _retry_after(when.strftime("%a, %d %b %Y %H:%M:%S GMT")) <= 30
    assert _retry_after("7") == 7.0 and _retry_after(None) is None and _retry_after("soon") is None


def _refusal(status: int, body, headers: dict | None = None):
    import json

    import requests
    from ibm_cloud_sdk_core import ApiException

    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if body is not None else b"<html>bad gateway</html>"
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    return ApiException(status, http_response=response)


def test_ibm_errors_carry_the_code_and_trace_of_each_apis_shape():
    from bootfleet.providers.ibmcloud import error_from

    vpc = error_from("create web-0", _refusal(400, {"errors": [{"code": "validation_unique_failed", "message":
                                                                "Provided Name (web-0) is not unique"}],
                                                    "trace": "4c7f7d9e-trace", "status_code": 400}))
    assert (vpc.code, vpc.trace, vpc.http_status, vpc.retryable) == ("validation_unique_failed", "4c7f7d9e-trace",
                                                                      400, False)
    assert str(vpc) == ("create web-0: Provided Name (web-0) is not unique (validation_unique_failed, HTTP 400,"
                        " trace 4c7f7d9e-trace)")
    iam = error_from("token", _refusal(400, {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could"
                                             " not be found.", "context": {"requestId": "iam-req-1"}}))
    assert (iam.code, iam.trace, iam.unauthorized) == ("BXNIM0415E", "iam-req-1", True)
    gateway = error_from("list", _refusal(503, None, {"X-Request-Id": "hdr-trace"}))
    assert (gateway.code, gateway.trace, gateway.retryable) == ("error", "hdr-trace", True)
    assert error_from("x", _refusal(429, {"code": "too_many", "message": "slow"})).code == "too_many"
