"""Fixtures of the deploy tests: a real in-memory gcp-storage-emulator behind a FaultProxy."""

import pytest
from gcs_fault_proxy import BUCKET, FaultProxy, free_port


@pytest.fixture
def gcs(monkeypatch):
    """An in-memory gcp-storage-emulator with bucket ``firmware``, behind a FaultProxy; always stopped."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    proxy = FaultProxy(port)
    proxy.thread.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{proxy.port}")
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        server.stop()
