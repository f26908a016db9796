"""Logging filters applied to every log line the project writes."""

from __future__ import annotations

import logging
import re

# A data-subject request's path names its subject (an e-mail address, a user id): Django's request
# log ("Not Found: /api/sessions/user-data/bob@example.com/export") would keep it in plain text.
_SUBJECT_IN_PATH = re.compile(r"(/user-data/)(?!requests/)[^/?\s]+")


def _redacted(value: object) -> object:
    return _SUBJECT_IN_PATH.sub(r"\1…", value) if isinstance(value, str) else value


class RedactSubjectIds(logging.Filter):
    """Replace the subject of a data-subject request path in a log record by an ellipsis."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True
