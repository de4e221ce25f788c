"""Authorization by a Rego policy (OPA's language), evaluated in-process by regopy.

Every authenticated request is decided by ``data.canonlog.authz`` over the input
{subject, scopes, ledger, stream, task, action}; it is allowed only when the
policy's ``allow`` is exactly true. A policy that fails to evaluate denies. Every
decision, allow and deny, is logged on the ``canonlog.authz`` logger with the
request id (bound for the request) and the policy's SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
from regopy import Input, Interpreter, RegoError

log = structlog.get_logger("canonlog.authz")

POLICY_PACKAGE = "data.canonlog.authz"


class PolicyError(ValueError):
    """The policy file cannot be read, parsed or compiled."""


def default_policy() -> tuple[str, str]:
    """The shipped policy: (its name, its text)."""
    text = resources.files("canonlog.infrastructure.http").joinpath(
        "policies/default.rego").read_text(encoding="utf-8")
    return "default.rego", text


def load_policy(path: Path | None) -> tuple[str, str]:
    """The policy at path, or the shipped one when path is None; raises PolicyError."""
    if path is None:
        return default_policy()
    try:
        return path.name, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the authorization policy {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...]


class PolicyAuthorizer:
    """A compiled policy and the decisions it makes."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self._interpreter = Interpreter()
        try:
            self._interpreter.add_module(name, text)
            self._interpreter.set_input(Input({}))
            self._interpreter.query(POLICY_PACKAGE)
        except RegoError as exc:
            raise PolicyError(f"the authorization policy {name} does not compile: "
                              f"{_first_line(exc)}") from exc
        # One interpreter holds one input at a time.
        self._lock = threading.Lock()

    def decide(self, request_input: dict[str, Any]) -> Decision:
        """Evaluates the policy for one request and logs the decision; errors deny."""
        try:
            with self._lock:
                self._interpreter.set_input(Input(request_input))
                output = self._interpreter.query(POLICY_PACKAGE)
            document = json.loads(str(output))["expressions"][0]
            allow = document.get("allow") is True
            reasons = tuple(str(r) for r in document.get("reasons", ()) if isinstance(r, str))
        except (RegoError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            allow, reasons = False, (f"the policy failed to evaluate ({type(exc).__name__})",)
        log.info("authorization decision", decision="allow" if allow else "deny",
                 reasons=list(reasons), policy=self.name, policy_digest=self.digest,
                 **request_input)
        return Decision(allow, reasons)


def _first_line(error: RegoError) -> str:
    text = " ".join(str(error).split())
    return text[:300]
