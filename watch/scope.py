"""Whose Plex history is imported, from the `watch_history_account` setting. Pure.

* empty: the Plex token's own account (the server owner's, local account 1); the only
  scope that also carries resume points, because Plex shows an item's resume offset only
  to the account whose token asks;
* `all`: every account's plays (resume points are left alone: whose would they be?);
* any other text: the managed user of that name, plays only.

Each scope has its own cursor; a play is logged by its Plex key whatever the scope, so
switching scope never imports a play twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from base.errors import SettingsError

OWNER_ACCOUNT = 1
ALL = "all"


@dataclass(frozen=True)
class Scope:
    key: str  # the cursor's name in our database
    label: str  # words for the log and the task summary
    account_id: int | None  # None: every account
    with_resume: bool


def needs_accounts(setting: str) -> bool:
    """Only a managed user's name needs the server's account list."""
    return setting.strip().lower() not in ("", ALL)


def resolve_scope(setting: str, accounts: Mapping[int, str] | None = None) -> Scope:
    """The scope for the setting's value; a name Plex does not know is a settings error."""
    value = setting.strip()
    if not value:
        return Scope(f"account:{OWNER_ACCOUNT}", "the Plex token's account", OWNER_ACCOUNT, True)
    if value.lower() == ALL:
        return Scope(ALL, "all Plex accounts", None, False)
    for account_id, name in (accounts or {}).items():
        if account_id and name.casefold() == value.casefold():
            return Scope(f"account:{account_id}", f"Plex user '{name}'", account_id, False)
    known = ", ".join(sorted(n for i, n in (accounts or {}).items() if i and n)) or "none"
    raise SettingsError(f"Setting 'Watch history account' (watch_history_account) names '{value}', "
                        f"which is no account on this Plex server (accounts: {known}).")
