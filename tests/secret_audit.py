"""Collects every text the plugin produced during the tests, with the secrets it was given."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SecretAudit:
    secrets: set[str] = field(default_factory=set)
    transcripts: list[tuple[str, str]] = field(default_factory=list)

    def add_secret(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v and len(v) >= 6)

    def record(self, where: str, text: str) -> None:
        self.transcripts.append((where, text))

    def leaks(self) -> list[tuple[str, str]]:
        found = []
        for where, text in self.transcripts:
            for secret in self.secrets:
                if secret in text:
                    found.append((where, f"a secret starting {secret[:3]!r}"))
        return found


AUDIT = SecretAudit()
