from tests.assistant.web.conftest import *  # noqa
def test_smoke(signed_in):
    w = signed_in
    r = w.client.get("/")
    assert r.status_code == 200, r.text
    body = w.ask("hello there friend")
    print(body[:2000])
    r = w.client.get("/")
    print(r.text[:300])
