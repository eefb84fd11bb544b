"""The route table, the OpenAPI description and docs/api.md name the same routes; the shell
serves the status page and the description itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from miyamoto.io.ops_endpoints import SHELL_PATHS as OPS_PATHS
from miyamoto.io.static_routes import status_page_html, with_static_routes
from miyamoto.logic.http import HttpRequest, HttpResponse, json_response
from miyamoto.logic.limits import Limits
from miyamoto.logic.openapi import SERVER_ERRORS, openapi_description
from miyamoto.logic.routes import api_routes

API_DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def described_routes() -> set[tuple[str, str]]:
    paths = openapi_description()["paths"]
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method != "parameters"
    }


def answered_routes() -> set[tuple[str, str]]:
    """Every route the node or its shell answers: the router's, and the shell's ops paths."""
    return set(api_routes()) | {("GET", path) for path in OPS_PATHS}


def test_every_route_of_the_node_and_its_shell_is_in_the_openapi_description_only() -> None:
    assert described_routes() == answered_routes()


def test_every_route_of_the_node_and_its_shell_is_in_the_api_docs() -> None:
    documented = set(
        re.findall(r"`(GET|POST|DELETE|PUT|PATCH|HEAD) (/[^` ?]*)", API_DOCS.read_text())
    )
    missing = sorted(answered_routes() - documented)
    assert not missing, f"docs/api.md does not name {missing}"


def test_every_operation_documents_its_errors_with_the_json_error_body() -> None:
    description = openapi_description()
    error = description["components"]["schemas"]["Error"]
    assert error["required"] == ["status", "error"]
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert set(SERVER_ERRORS) <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    (content,) = response["content"].values()
                    assert content["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_description_states_the_limits_and_defaults_it_is_built_with() -> None:
    limits = Limits(url_chars_max=300, batch_tasks_max=7)
    description = openapi_description(limits)
    task = description["components"]["schemas"]["JsonTask"]["properties"]
    assert task["url"]["maxLength"] == 300
    assert task["method"]["default"] == "POST"
    assert task["retry_limit"]["default"] == 10
    assert (task["min_backoff"]["default"], task["deadline"]["default"]) == (1, 30)
    batch = description["paths"]["/{queue}"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["anyOf"][1]["maxItems"] == 7
    json.dumps(description)  # plain JSON data


def node_handler(request: HttpRequest) -> HttpResponse:
    return json_response(200, {"node": request.target})


@pytest.mark.parametrize("target", ["/", "/_ui", "/_ui/", "/?queues=a,b"])
def test_the_shell_serves_the_status_page(target: str) -> None:
    handler = with_static_routes(node_handler, limits=Limits())
    response = handler(HttpRequest(method="GET", target=target))
    assert isinstance(response, HttpResponse)
    assert response.status == 200
    assert dict(response.headers)["content-type"] == "text/html; charset=utf-8"
    assert response.body == status_page_html()
    assert b"<title>Miyamoto</title>" in response.body


def test_the_shell_serves_the_openapi_description() -> None:
    handler = with_static_routes(node_handler, limits=Limits())
    response = handler(HttpRequest(method="GET", target="/_openapi.json"))
    assert isinstance(response, HttpResponse)
    assert response.status == 200
    assert response.json() == openapi_description()


def test_other_methods_on_shell_paths_are_405_and_other_paths_go_to_the_node() -> None:
    handler = with_static_routes(node_handler, limits=Limits())
    refused = handler(HttpRequest(method="POST", target="/_ui"))
    assert isinstance(refused, HttpResponse)
    assert (refused.status, refused.json()) == (
        405,
        {"status": "error", "error": "POST is not allowed on /_ui; use GET"},
    )
    passed = handler(HttpRequest(method="GET", target="/emails"))
    assert isinstance(passed, HttpResponse)
    assert passed.json() == {"node": "/emails"}


def test_the_status_page_uses_only_the_public_api() -> None:
    page = status_page_html().decode()
    assert page.count("fetch(") == 1  # every request goes through api(), to paths of the API
    assert "/_peer" not in page
    assert "innerHTML" not in page  # task data is shown as text, never as markup
