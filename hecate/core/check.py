"""`hecate check`: settings are valid (checked before this runs), indexes are built, and existing
data is looked over for what would trouble the service (most of it from the Node era)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import User, ensure_indexes, ping


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_database() -> Report:
    report = Report()
    ping()
    users = User._get_collection()
    duplicates = list(users.aggregate([
        {"$group": {"_id": {"$toLower": "$email"}, "n": {"$sum": 1}}},
        {"$match": {"n": {"$gt": 1}}},
    ]))
    for dup in duplicates:
        report.problems.append(
            f"{dup['n']} accounts share the email {dup['_id']!r} up to letter case; only one can "
            "sign in with it: merge or rename the others"
        )
    try:
        ensure_indexes()
        report.notes.append("indexes are in place")
    except Exception as error:  # noqa: BLE001 - reported, with the database's own words
        report.problems.append(f"could not build the indexes: {error}")
    legacy = users.count_documents({"emailNormalized": {"$exists": False}})
    if legacy:
        report.notes.append(
            f"{legacy} accounts from the Node era get their normalized keys at their next sign-in"
        )
    bcrypt = users.count_documents({"hash": {"$regex": r"^\$2[aby]\$"}})
    if bcrypt:
        report.notes.append(f"{bcrypt} bcrypt hashes are upgraded to argon2id at the next sign-in")
    return report
