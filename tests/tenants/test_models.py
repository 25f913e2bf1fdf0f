"""tenants/models.py: installations never show their secret."""

from tenants.models import Installation


def test_installation_repr_never_includes_the_secret():
    installation = Installation(client_key="c", base_url="https://c.atlassian.net", shared_secret="plain-s")
    assert "plain-s" not in repr(installation)
    assert "plain-s" not in str(installation)
