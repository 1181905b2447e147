"""Storage: the MongoEngine documents and the database connection.

The ``users`` collection keeps the field names of the Node original (``username``, ``email``,
``hash``, ``verified``, ``allowMagicLogin``, ``sessions``) so its documents work unchanged; new
fields are added next to them. Sessions live in their own collection, one document per sign-in,
expired by a TTL index.
"""

from __future__ import annotations

import datetime as dt
import threading
import unicodedata
from typing import Any, TypeVar

import mongoengine as me
from pymongo import ASCENDING, DESCENDING, IndexModel

ALIAS = "default"

D = TypeVar("D", bound=me.Document)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware_utc(moment: dt.datetime) -> dt.datetime:
    """A stored time with its zone: MongoDB hands back naive datetimes that are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def iso_utc(moment: dt.datetime) -> str:
    """A stored time as the API shows it: ISO 8601 in UTC with a Z."""
    return aware_utc(moment).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def find_document(document: type[D], query: dict[str, Any]) -> D | None:
    """One document by a raw query (database field names): a plain find_one. On the hot paths
    (the user of every authenticated request, the session of a refresh) a queryset's .first()
    costs ≈ 0.4 ms more per call here, in cursor cloning."""
    found = document._get_collection().find_one(query)
    return document._from_son(found) if found is not None else None  # type: ignore[no-any-return]


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().lower()


class User(me.Document):
    meta = {
        "collection": "users",
        "strict": False,  # Node-era documents carry fields this model does not name
        "auto_create_index": False,
        "db_alias": ALIAS,
    }

    username = me.StringField(required=True)
    email = me.StringField(required=True)
    # Unique, case-insensitive keys. Sparse: documents written by the Node original lack them
    # until their owner's next successful login fills them in.
    email_normalized = me.StringField(db_field="emailNormalized")
    username_normalized = me.StringField(db_field="usernameNormalized")
    hash = me.StringField()
    verified = me.BooleanField(default=False)
    allow_magic_login = me.BooleanField(db_field="allowMagicLogin", default=False)
    # Session ids of the Node original; only ever emptied (each is accepted once, then moved to
    # the sessions collection).
    sessions = me.ListField(me.StringField())
    # SHA-256 of the device ids of browsers that signed in (see devices.py).
    devices = me.ListField(me.StringField())
    created_at = me.DateTimeField(db_field="createdAt")
    # Set by an operator (`hecate user disable`): no sign-in, no refresh, no new session.
    disabled = me.BooleanField(default=False)

    def public(self) -> dict[str, object]:
        """The only shape of a user that leaves the service."""
        return {
            "id": str(self.id),
            "username": self.username,
            "email": self.email,
            "verified": bool(self.verified),
        }


class Session(me.Document):
    meta = {
        "collection": "sessions",
        "auto_create_index": False,
        "db_alias": ALIAS,
    }

    id = me.StringField(primary_key=True)
    user_id = me.ObjectIdField(db_field="userId", required=True)
    jti = me.StringField(required=True)
    prev_jti = me.StringField(db_field="prevJti")
    rotated_at = me.DateTimeField(db_field="rotatedAt")
    created_at = me.DateTimeField(db_field="createdAt", required=True)
    last_used_at = me.DateTimeField(db_field="lastUsedAt")
    expires_at = me.DateTimeField(db_field="expiresAt", required=True)
    absolute_expires_at = me.DateTimeField(db_field="absoluteExpiresAt", required=True)
    remember = me.BooleanField(default=False)
    user_agent = me.StringField(db_field="userAgent", default="")


class LinkToken(me.Document):
    """The server half of a link token (verification, reset, magic login, email change): only a
    hash of the random value is stored, so the database alone cannot be used to log in, and one
    document per purpose and user (``_id``) means a newer link replaces the older one."""

    meta = {
        "collection": "link_tokens",
        "auto_create_index": False,
        "db_alias": ALIAS,
    }

    id = me.StringField(primary_key=True)  # "<purpose>:<user id>"
    token_hash = me.StringField(db_field="hash", required=True)
    user_id = me.ObjectIdField(db_field="userId", required=True)
    purpose = me.StringField(required=True)
    email = me.StringField(required=True)  # normalized address the link was sent to
    new_email = me.StringField(db_field="newEmail")  # email change: the address as typed
    created_at = me.DateTimeField(db_field="createdAt", required=True)
    expires_at = me.DateTimeField(db_field="expiresAt", required=True)


class Event(me.Document):
    """One security event of the audit trail (core/audit.py). Never a secret or an email
    address; expired by a TTL index at ``expiresAt`` (time + AUDIT_RETENTION when written)."""

    meta = {
        "collection": "events",
        "auto_create_index": False,
        "db_alias": ALIAS,
    }

    time = me.DateTimeField(required=True)
    event = me.StringField(required=True)
    user_id = me.ObjectIdField(db_field="userId")
    session_id = me.StringField(db_field="sessionId")
    ip = me.StringField()
    user_agent = me.StringField(db_field="userAgent")
    details = me.DictField()
    expires_at = me.DateTimeField(db_field="expiresAt", required=True)


INDEXES: dict[type[me.Document], list[IndexModel]] = {
    User: [
        IndexModel([("emailNormalized", ASCENDING)], unique=True, sparse=True,
                   name="emailNormalized_unique"),
        IndexModel([("usernameNormalized", ASCENDING)], unique=True, sparse=True,
                   name="usernameNormalized_unique"),
        IndexModel([("email", ASCENDING)], name="email"),
    ],
    Session: [
        IndexModel([("userId", ASCENDING), ("createdAt", DESCENDING)], name="user_created"),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
    LinkToken: [
        IndexModel([("hash", ASCENDING)], unique=True, name="hash_unique"),
        IndexModel([("userId", ASCENDING)], name="user"),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
    Event: [
        IndexModel([("userId", ASCENDING), ("time", DESCENDING)], name="user_time"),
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"),
    ],
}


def connect(url: str, name: str, timeout_ms: int) -> None:
    """Register the process-wide client, lazily: nothing is dialled until the first query, so a
    service whose database is down still starts (FaaS cannot wait)."""
    global _indexes_built
    _indexes_built = False
    me.disconnect(alias=ALIAS)
    me.connect(
        db=name,
        host=url,
        alias=ALIAS,
        connect=False,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 2, 10_000),
        maxPoolSize=20,
        retryWrites=False,
    )


def disconnect() -> None:
    me.disconnect(alias=ALIAS)


def ping() -> None:
    me.get_db(ALIAS).client.admin.command("ping")


# Whether this process has built the indexes on the connected database (one client per process,
# like the connection itself).
_indexes_built = False
_indexes_lock = threading.Lock()


def ensure_indexes() -> None:
    global _indexes_built
    for document, indexes in INDEXES.items():
        document._get_collection().create_indexes(indexes)
    _indexes_built = True


def require_indexes() -> None:
    """Build the indexes now unless this process already has. Writes whose only guard against a
    race is a unique index (registration, email change) call this first: a service that started
    while its database was down (and could not build them then) builds them once the database is
    back, without a restart. A database error propagates (503)."""
    if _indexes_built:
        return
    with _indexes_lock:
        if not _indexes_built:
            ensure_indexes()
