"""Implementations of the broker port (``fanout.core.broker``): ``memory`` here,
``redis`` in its own package. ``fanout.asgi.wiring`` picks one by URL scheme and
imports it only then, so the default install stays light."""
