"""The group commit's queue (sessions_app.ingest_group.GroupCommit), without a database:
under many threads every request is answered once, from the group that wrote it, and
requests that arrive during a write are written together by one of them."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from sessions_app import ingest_group
from sessions_app.event_input import EventIn
from sessions_app.ingestion import IngestResult


def _pending(i: int) -> ingest_group.Pending:
    now = datetime.now(UTC)
    return ingest_group.Pending(
        token_hash=f"{i:064x}",
        session_id=uuid.uuid4(),
        event=EventIn(event_type="click", message_id=f"m-{i}"),
        time=now,
        received_at=now,
    )


def test_every_request_is_answered_once_by_the_group_that_wrote_it(monkeypatch):
    groups: list[list[ingest_group.Pending]] = []
    writing = threading.Lock()

    def write(group):
        assert writing.acquire(blocking=False), "two groups written at once"
        try:
            groups.append(list(group))
            time.sleep(0.002)  # a round trip: later requests queue meanwhile
            for pending in group:
                # every third is handed back (None), as a session the group cannot take
                if int(pending.event.message_id[2:]) % 3:
                    pending.result = IngestResult(stored=1, duplicates=0, anonymous=0)
        finally:
            writing.release()

    monkeypatch.setattr(ingest_group, "group_write", write)
    queue = ingest_group.GroupCommit()
    items = [_pending(i) for i in range(400)]
    answers: dict[int, object] = {}

    def send(start: int) -> None:
        for i in range(start, len(items), 16):
            answers[i] = queue.submit(items[i])

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(16)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)

    written = [p for group in groups for p in group]
    assert sorted(id(p) for p in written) == sorted(id(p) for p in items)  # each written once
    assert len(answers) == len(items)
    for i, item in enumerate(items):
        assert item.done and answers[i] is item.result
        assert (item.result is None) == (i % 3 == 0)
    assert queue.groups == len(groups) and queue.events == sum(1 for p in items if p.result)
    assert max(len(group) for group in groups) > 1  # requests that waited were written together
    assert not queue._writing and not queue._queue
