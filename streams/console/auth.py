"""Who may sign in to the console and what each role may do.

The users file holds one ``name:role:hash`` a line, the hash argon2id's encoded string
(argon2-cffi), or ``-`` for a user who signs in only through a trusted upstream (no password
matches it); ``#`` starts a comment. A role is one of :data:`ROLES`, each allowed the
actions of :data:`ALLOWED`. In the lab (a simulated clock, or no users file) the console
adds a one-time ``admin`` whose password it prints when it starts.

Pure: no web framework here; the app (streams.console.app) asks :func:`may` and
:meth:`Users.check`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from controller.errors import ConfigurationError

#: from least to most allowed
ROLES = ("viewer", "analyst", "operator", "admin")

#: read: every page and GET; decide: record a decision (ship an arm, keep the control);
#: operate: the lifecycle commands (pause, resume, stop, freeze, unfreeze) and a launch;
#: comment: a comment in the audit trail (whoever may act); draft: save a spec as a draft
#: (whoever may act; a draft's author may discard it, and so may whoever may operate)
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "analyst": frozenset({"read", "decide", "comment", "draft"}),
    "operator": frozenset({"read", "operate", "comment", "draft"}),
    "admin": frozenset({"read", "decide", "operate", "comment", "draft"}),
}

#: what each command needs (``create``: a launch from the "New experiment" page)
NEEDS = {
    "pause": "operate",
    "resume": "operate",
    "stop": "operate",
    "freeze": "operate",
    "unfreeze": "operate",
    "create": "operate",
    "decision": "decide",
    "comment": "comment",
    "draft": "draft",
}

#: a user name is an actor's name (streams.worker.schemas.actor_error), without a host
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")

_HASHER = PasswordHasher()


def may(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (``read``, ``decide``, ``operate``)."""
    return action in ALLOWED.get(role, frozenset())


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def hash_line(name: str, role: str, password: str) -> str:
    """A users-file line for ``name`` with ``role`` and ``password`` (argon2id)."""
    check_user(name, role)
    if not password:
        raise ConfigurationError("a console user needs a password")
    return f"{name}:{role}:{_HASHER.hash(password)}"


def check_user(name: str, role: str, where: str = "the new user") -> None:
    """Refuse (ConfigurationError) a name that is not an actor's or a role that is not one."""
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{where}: {name!r} is not a user name (letters, digits and _ . + -, at most 64)"
        )
    if role not in ROLES:
        raise ConfigurationError(f"{where}: {role!r} is not a role (one of {', '.join(ROLES)})")


class Users:
    """The users who may sign in, by name."""

    def __init__(self, users: dict[str, User] | None = None) -> None:
        self.users = dict(users or {})

    @classmethod
    def load(cls, path: Path) -> Users:
        """The users of a users file; a malformed line raises ConfigurationError naming it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"PRICELAB_CONSOLE__USERS_FILE: {path}: {exc.strerror or exc}"
            ) from None
        return cls._parse(text, str(path))

    @classmethod
    def _parse(cls, text: str, source: str) -> Users:
        users: dict[str, User] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}, line {n}"
            parts = line.split(":", 2)
            if len(parts) != 3 or not (parts[2].startswith("$argon2") or parts[2] == "-"):
                raise ConfigurationError(
                    f"{where}: not name:role:argon2-hash, or name:role:- (pricelab console user "
                    "NAME --role ROLE makes a line)"
                )
            name, role, digest = parts
            check_user(name, role, where)
            if name in users:
                raise ConfigurationError(f"{where}: user {name!r} is named twice")
            users[name] = User(name, role, digest)
        return cls(users)

    @classmethod
    def load_text(cls, text: str, where: str = "the users") -> Users:
        """The users of a users file's text (:meth:`load`)."""
        return cls._parse(text, where)

    def add_one_time_admin(self) -> str:
        """Add ``admin`` (role admin) with a fresh random password, returned once; an
        ``admin`` of the file is replaced for this process."""
        password = secrets.token_urlsafe(12)
        self.users["admin"] = User("admin", "admin", _HASHER.hash(password))
        return password

    def check(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; None otherwise (an unknown name costs a
        hash as a known one does, so timing does not tell which names exist)."""
        user = self.users.get(name)
        digest = user.password_hash if user is not None else _DUMMY
        try:
            _HASHER.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


_DUMMY = _HASHER.hash(secrets.token_urlsafe(12))
