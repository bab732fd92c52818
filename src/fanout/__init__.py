"""fanout: a real-time WebSocket hub on FastAPI, and a lab that proves what breaks."""

__version__ = "0.1.0"
