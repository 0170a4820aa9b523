"""``LoggingHandler``: a logging handler that writes through ``tqdm`` so log lines do not break progress bars.

Same name and use as sentence-transformers' (``logging.basicConfig(handlers=[LoggingHandler()])``).
"""

from __future__ import annotations

import logging

DEFAULT_FORMAT = "%(asctime)s - %(levelname)s - %(name)s - %(message)s"


class LoggingHandler(logging.Handler):
    """Emit each formatted record with ``tqdm.write`` (stdout), then flush."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record))
            self.flush()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            self.handleError(record)


def install_logger(
    given_logger: logging.Logger,
    level: int = logging.WARNING,
    fmt: str = "%(levelname)s:%(name)s:%(message)s",
) -> None:
    """Give ``given_logger`` a ``LoggingHandler`` with ``fmt`` and set its level (no colours, unlike ST)."""
    handler = LoggingHandler()
    handler.setFormatter(logging.Formatter(fmt))
    given_logger.addHandler(handler)
    given_logger.setLevel(level)
