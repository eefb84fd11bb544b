from miyamoto.logic.schedule import TimerHeap
from miyamoto.logic.store import TaskStore
from miyamoto.logic.task import Task, TaskState


def make(task_id: str, due_ms: int) -> Task:
    return Task(
        id=task_id,
        queue="q",
        method="POST",
        url="http://x/",
        headers=(),
        body=b"",
        eta_ms=due_ms,
        created_ms=0,
    )


def test_heap_skips_cancelled_and_rescheduled_entries() -> None:
    heap = TimerHeap()
    a, b, c = make("a", 10), make("b", 20), make("c", 30)
    for task in (a, b, c):
        heap.push(task)
    a.state = TaskState.CANCELLED
    b.due_ms = 40
    heap.push(b)
    assert heap.next_due_ms() == 30
    assert heap.pop_due(29) is None
    assert heap.pop_due(100) is c
    c.state = TaskState.DELIVERING
    assert heap.pop_due(100) is b
    b.state = TaskState.DELIVERING
    assert heap.pop_due(100) is None


def test_heap_breaks_ties_by_id() -> None:
    heap = TimerHeap()
    for task_id in ("b", "c", "a"):
        heap.push(make(task_id, 5))
    popped = []
    while (task := heap.pop_due(5)) is not None:
        popped.append(task.id)
        task.state = TaskState.DELIVERING
    assert popped == ["a", "b", "c"]


def test_finished_tasks_expire_in_order_and_drop_their_body() -> None:
    store = TaskStore(retention_ms=100)
    a, b = make("a", 0), make("b", 0)
    a.body = b"payload"
    store.add(a)
    store.add(b)
    a.state = b.state = TaskState.SUCCEEDED
    store.finished(a, 0)
    store.finished(b, 50)
    assert a.body == b""
    assert store.next_expiry_ms() == 100
    assert store.expire(120) == [a]
    assert store.get("q", "a") is None
    assert store.get("q", "b") is b
    assert store.expire(150) == [b]
    assert len(store) == 0
    assert store.next_expiry_ms() is None
