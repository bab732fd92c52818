"""Observe the server under test: its process, CPU, memory, socket queues, log, metrics."""

from fanout.lab.observe.logs import (
    ExceptionRecord,
    exceptions_in_file,
    extract_exceptions,
    tail,
    tail_file,
)
from fanout.lab.observe.metrics import check_local_url, scrape
from fanout.lab.observe.process import ObserveError, ServerProcess
from fanout.lab.observe.sampler import Observer
from fanout.lab.observe.sockets import SocketQueue, parse_proc_net_tcp, queues_on_port

__all__ = [
    "ExceptionRecord",
    "ObserveError",
    "Observer",
    "ServerProcess",
    "SocketQueue",
    "check_local_url",
    "exceptions_in_file",
    "extract_exceptions",
    "parse_proc_net_tcp",
    "queues_on_port",
    "scrape",
    "tail",
    "tail_file",
]
