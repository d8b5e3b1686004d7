"""The Unicode normal forms a file name may be stored in, and comparing names across them.

The same name reaches Stash and Plex in different forms: files written on macOS or through
SMB/AFP shares carry NFD (`e` + combining accent), which Plex stores as the file system gives
it, while Stash reports NFC. Both servers compare stored text as it is, so a look-up must be
asked in the form the server holds, and our own comparisons are made in NFC. Below every
package that talks to either server, so both use the same rule.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def name_forms(name: str, held: str | None = None) -> tuple[str, ...]:
    """The distinct normal forms a name may be stored in, for a server that compares the
    stored text as it is: only the form it is known to hold (`held`, "NFC" or "NFD"), else
    both, NFC first."""
    forms = {form: unicodedata.normalize(form, name) for form in ("NFC", "NFD")}
    if forms["NFC"] == forms["NFD"]:
        return (forms["NFC"],)
    return (forms[held],) if held in forms else (forms["NFC"], forms["NFD"])


def form_of(paths: Iterable[str]) -> str | None:
    """The normal form the first path that tells them apart is in; None when none does."""
    for path in paths:
        if not unicodedata.is_normalized("NFC", path):
            return "NFD"
        if not unicodedata.is_normalized("NFD", path):
            return "NFC"
    return None
