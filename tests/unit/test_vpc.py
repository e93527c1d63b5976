"""The VPC provider's retry timing without a server: Retry-After as the API sends it."""

import datetime

from bootfleet.providers.ibmcloud import retry_after as _retry_after


def test_retry_after_as_an_http_date():
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    assert 28 <= _retry_after(when.strftime("%a, %d %b %Y %H:%M:%S GMT")) <= 30
    assert _retry_after("7") == 7.0 and _retry_after(None) is None and _retry_after("soon") is None
