import pytest

from miyamoto.logic.errors import ClientError
from miyamoto.logic.routes import Operation, route


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
