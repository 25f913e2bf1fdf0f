"""connect_testkit/keyserver.py: a real loopback key server that misbehaves on demand."""

import requests

from connect_testkit import BEHAVIOURS, KeyServer, generate_rsa_key, public_pem


def test_key_server_serves_published_keys_and_misbehaves_on_demand():
    key = generate_rsa_key()
    with KeyServer() as server:
        server.publish("kid-1", key)
        assert requests.get(f"{server.url}/kid-1", timeout=5).content == public_pem(key)
        assert requests.get(f"{server.url}/other", timeout=5).status_code == 404
        server.behaviour = "redirect"
        response = requests.get(f"{server.url}/kid-1", timeout=5, allow_redirects=False)
        assert (response.status_code, response.headers["Location"]) == (302, "/elsewhere/kid-1")
        server.kid_behaviours["kid-1"] = "gone"
        assert requests.get(f"{server.url}/kid-1", timeout=5).status_code == 410
        assert server.requests == ["/kid-1", "/other", "/kid-1", "/kid-1"]
    assert "hang" in BEHAVIOURS and "oversize" in BEHAVIOURS
