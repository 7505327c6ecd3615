"""DurableAcks: a client's answers wait for the batch that holds what they answer,
keep their order across batches, and cost one registration per batch."""

from __future__ import annotations

from twisted.internet import task

from gateway.hub.acks import DurableAcks
from gateway.hub.hub import Hub
from gateway.hub.persistence import Batch
from tests.hub.memory_journal import MemoryJournal


def rig(holding: bool = True) -> tuple[MemoryJournal, DurableAcks, list[str]]:
    journal = MemoryJournal()
    journal.holding = holding
    written: list[str] = []
    return journal, DurableAcks(Hub(None, task.Clock(), journal), written.append), written


def test_without_a_journal_an_answer_goes_at_once() -> None:
    written: list[str] = []
    acks = DurableAcks(Hub(None, task.Clock()), written.append)
    acks.send("a")
    assert written == ["a"] and not acks.pending()


def test_nothing_pending_in_the_store_means_at_once() -> None:
    _, acks, written = rig(holding=False)
    acks.send("a")
    assert written == ["a"]


def test_answers_wait_for_the_commit_with_one_call_per_batch() -> None:
    journal, acks, written = rig()
    for item in "abc":
        acks.send(item)
    assert written == [] and acks.pending()
    assert journal.batch is not None and len(journal.batch._calls) == 1
    journal.commit()
    assert written == ["a", "b", "c"] and not acks.pending()


def test_a_later_batch_does_not_release_answers_of_an_earlier_one_early() -> None:
    journal, acks, written = rig()
    acks.send("a")
    first = journal.batch
    journal.batch = None  # the first batch is committing; changes go to a second
    acks.send("b")
    second = journal.batch
    assert first is not None and second is not None and first is not second
    first.fire()
    assert written == ["a"]
    second.fire()
    assert written == ["a", "b"]


def test_an_answer_with_nothing_to_wait_for_still_keeps_its_place() -> None:
    journal, acks, written = rig()
    acks.send("a")
    journal.holding = False  # what "b" answers is durable already
    acks.send("b")
    assert written == []
    journal.commit()
    assert written == ["a", "b"]


def test_dropped_answers_are_never_written() -> None:
    journal, acks, written = rig()
    acks.send("a")
    acks.drop()
    journal.commit()
    assert written == [] and not acks.pending()


def test_a_write_that_ends_the_connection_stops_the_rest() -> None:
    journal = MemoryJournal()
    journal.holding = True
    written: list[str] = []

    def write(item: str) -> None:
        written.append(item)
        acks.drop()

    acks = DurableAcks(Hub(None, task.Clock(), journal), write)
    acks.send("a")
    acks.send("b")
    journal.commit()
    assert written == ["a"]


def test_a_batch_calls_every_waiter_even_after_one_fails() -> None:
    batch = Batch()
    called: list[int] = []

    def bad() -> None:
        raise RuntimeError("boom")

    batch.then(bad)
    batch.then(lambda: called.append(1))
    batch.fire()
    batch.then(lambda: called.append(2))  # already durable: at once
    assert called == [1, 2]
