import pytest

from miyamoto.logic.errors import ClientError
from miyamoto.logic.routes import (
    PEER_BATCH_PATH,
    QUEUE_ROUTES,
    SHELL_PATHS,
    Operation,
    api_routes,
    route,
)


@pytest.mark.parametrize(
    ("method", "target", "operation", "queue", "task_id"),
    [
        ("POST", "/emails", Operation.ENQUEUE, "emails", ""),
        ("POST", "/emails/", Operation.ENQUEUE, "emails", ""),
        ("GET", "/emails", Operation.QUEUE_INFO, "emails", ""),
        ("GET", "/emails/abc-1", Operation.TASK_INFO, "emails", "abc-1"),
        ("DELETE", "/emails/abc-1?x=1", Operation.TASK_CANCEL, "emails", "abc-1"),
        ("GET", "/_health", Operation.HEALTH, "", ""),
    ],
)
def test_each_path_names_its_operation(
    method: str, target: str, operation: Operation, queue: str, task_id: str
) -> None:
    got = route(method, target)
    assert (got.operation, got.queue, got.task_id) == (operation, queue, task_id)


def test_query_is_kept_in_order() -> None:
    assert route("GET", "/q?state=failed&a=1&a=2").query == (
        ("state", "failed"),
        ("a", "1"),
        ("a", "2"),
    )


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/_other", 404),
        ("POST", "/_peer", 404),  # the shell's (peer_endpoint.py): never the node's API
        ("POST", "/_health", 405),
        ("PATCH", "/q", 405),
        ("PUT", "/q/id", 405),
        ("GET", "/q/id/more", 404),
    ],
)
def test_unknown_paths_and_methods_are_refused(method: str, target: str, status: int) -> None:
    with pytest.raises(ClientError) as raised:
        route(method, target)
    assert raised.value.status == status


def test_a_mistyped_queue_command_says_unknown_queue_command() -> None:
    with pytest.raises(ClientError) as raised:
        route("POST", "/emails/_pauze")
    assert raised.value.status == 404
    assert raised.value.message == 'unknown queue command "_pauze"; use _pause, _resume, _purge'
    # A task id may start with `_`: GET and DELETE still name the task.
    assert route("GET", "/emails/_pauze").operation is Operation.TASK_INFO


def test_the_route_table_is_what_route_does() -> None:
    """QUEUE_ROUTES and the node paths are the lists the docs and OpenAPI are checked against:
    each must route to its operation, and together they must cover every operation."""
    fill = {"{queue}": "emails", "{id}": "abc-1", "{destination}": "hooks.example:443"}
    for method, template, operation in QUEUE_ROUTES:
        target = template
        for name, value in fill.items():
            target = target.replace(name, value)
        assert route(method, target).operation is operation, (method, template)
    covered = {operation for _, _, operation in QUEUE_ROUTES}
    for method, path in api_routes():
        if path in SHELL_PATHS or path == PEER_BATCH_PATH:
            continue
        for name, value in fill.items():
            path = path.replace(name, value)
        covered.add(route(method, path).operation)
    assert covered == set(Operation)
