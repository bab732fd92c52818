"""The chat page tests drive a real headless Chromium."""

from tests.support.browser import browser

__all__ = ["browser"]
