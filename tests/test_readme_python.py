"""README's Python snippets: each compiles, and the ones that stand alone run as written."""

import json
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_has_python_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_each_python_snippet_compiles(block):
    compile(block, "README.md", "exec")


@pytest.mark.django_db
def test_the_own_view_snippet_serves_a_context_token(settings, tenant):
    from django.test import RequestFactory

    from connect_testkit import CONTEXT_QSH, sign_tenant
    from lifecycle.middleware import ConnectVerificationMiddleware
    from tests.conftest import TENANT_KEY, TENANT_SECRET

    (block,) = [b for b in BLOCKS if "@verified(" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    view = namespace["my_data"]
    token = sign_tenant(
        TENANT_SECRET, client_key=TENANT_KEY, method="GET", url="/", overrides={"qsh": CONTEXT_QSH}
    )
    request = RequestFactory().get("/my-data", HTTP_AUTHORIZATION=f"JWT {token}")
    response = ConnectVerificationMiddleware(lambda r: None).process_view(request, view, (), {})
    assert response.status_code == 200
    assert json.loads(response.content) == {"site": tenant.base_url, "user": None}


@pytest.mark.parametrize("name", ["test_readme_example.py", "test_readme_jira_example.py"])
def test_the_testing_examples_are_the_tests_that_run(name):
    source = (Path(__file__).resolve().parent / "connect_testkit" / name).read_text()
    example = source.split("# --- README example: start ---\n", 1)[1].split("# --- README example: end ---")[
        0
    ]
    assert example.strip("\n") + "\n" in BLOCKS
