"""Notebook 08, section 2: the membership trap. A client that resumes after one ``MAX(id)`` for all its
conversations never gets the history of a conversation it joined later: those messages are older than its
cursor. A cursor per conversation fixes it (a conversation the client does not name starts at 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...clients.chat import ChatClient, LocalStore
from ...course.exercises import Prediction
from .common import chat_server, publish

__all__ = ["Membership", "joins_later", "predict_joined_history"]


@dataclass(frozen=True)
class Membership:
    """Two of ada's devices, one per kind of cursor, before and after she joins a conversation.

    Attributes:
        history: messages the joined conversation held when she joined.
        cursor: the one ``MAX(id)`` the single-cursor device resumed after.
        oldest, newest: the joined conversation's first and last ids.
        one_cursor: of its history, how many reached the device that resumed with one cursor for all.
        per_conversation: how many reached the device that resumed with a cursor per conversation.
        later: messages posted in the joined conversation after the join (both devices get those).
    """

    history: int
    cursor: int
    oldest: int
    newest: int
    one_cursor: int
    per_conversation: int
    later: int

    def __repr__(self) -> str:
        return (f"'ops' held {self.history} messages (ids {self.oldest} to {self.newest}) when ada joined; "
                f"her device's one cursor was {self.cursor}\n"
                f"  one cursor for all (MAX(id)):     {self.one_cursor} of the {self.history} old ones\n"
                f"  a cursor per conversation:        {self.per_conversation} of the {self.history} old ones\n"
                f"  (and each got the {self.later} posted after the join)")


def joins_later(history: int = 20, later: int = 2) -> Membership:
    """bob writes in "ops" and "general" in turn; ada's two devices sync "general"; ada joins "ops"; bob writes
    ``later`` more in "ops"; both devices reconnect, one resuming after one ``MAX(id)``, one per conversation."""
    with chat_server(page=20) as (server, srv, d):
        server.log.join("bob", "ops")
        for _ in range(history):  # ops first, then general: general's ids end above every ops id
            publish(server, srv, 1, conversation="ops")
            publish(server, srv, 1, conversation="general")
        stores = [LocalStore(os.path.join(d, f"ada-{n}.db")) for n in ("one", "per")]
        clients = [ChatClient(stores[0], srv.host, srv.port, "ada", "correct horse", by_conversation=False),
                   ChatClient(stores[1], srv.host, srv.port, "ada", "correct horse")]
        try:
            for client in clients:
                client.connect(idle=0.2)
            cursor = stores[0].last_id()
            server.log.join("ada", "ops")
            publish(server, srv, later, conversation="ops")
            for client in clients:
                client.connect(idle=0.2)
            old = server.log.conversation_ids("ops")[:history]

            def held(store: LocalStore) -> int:
                have = {r[0] for r in store.db.execute("SELECT id FROM messages WHERE conversation = 'ops'")}
                return sum(1 for i in old if i in have)

            return Membership(history, cursor, old[0], old[-1], held(stores[0]), held(stores[1]), later)
        finally:
            for store in stores:
                store.close()


def predict_joined_history(history: int = 20) -> Prediction:
    """Predict what a single-cursor resume brings of a conversation joined later."""
    def explain(given: float, measured: float) -> str:
        return ("The replay sends the messages with an id above the cursor, in every conversation ada may read "
                "now; every old message of 'ops' has a lower id than her cursor, which 'general' pushed past "
                "them. Nothing is lost from the log and no rule was broken: one number cannot say \"I have "
                "everything of general, nothing of ops\". A cursor per conversation can.")

    return Prediction(
        f"bob has written {history} messages in 'ops' and as many in 'general', in turn. ada's device holds "
        "everything of 'general'. ada is now added to 'ops'; her device reconnects and resumes after its "
        f"MAX(id), as in section 2. How many of the {history} old messages of 'ops' does the replay bring?",
        measure=lambda run: run.one_cursor, unit="messages", tolerance=0.0, explain=explain,
        mistakes=[(lambda g, m: g == history, "The replay sends what comes after the cursor, and the old messages "
                   "of 'ops' all came before it: one cursor for all conversations skips them."),
                  (lambda g, m: 0 < g < history, "None of them is above the cursor: 'general' was written last, so "
                   "its newest id is above every message of 'ops'.")],
    )
