"""What goes wrong when a model is called: one family of one-line user errors for every caller.

The names say "teacher" because the teacher was their first user; predict's hosted models and any
judge raise the same classes (through the same client), and re-word them for their own params.
"""
from __future__ import annotations

from synthtune.core.errors import UserError


class TeacherError(UserError):
    """The model cannot be used as configured; what was already answered stays in the cache.

    `detail` is the message without the setting it names, so a caller whose settings live
    elsewhere (predict.openai.<name>) can name its own.
    """

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail if detail is not None else message

    @classmethod
    def at(cls, setting: str, detail: str) -> TeacherError:
        return cls(f"{setting}: {detail}", detail)


class TeacherUnreachable(TeacherError):
    pass


class TeacherAuthError(TeacherError):
    pass


class TeacherModelNotFound(TeacherError):
    pass


class BudgetExceeded(TeacherError):
    pass


class RequestFailed(Exception):
    """One request failed for good (after its retries): the teacher quarantines it (never cached),
    predict stops with it. Not a TeacherError: the endpoint as a whole still works."""
