"""Test helpers that ship with embedforge, for our tests and benchmarks and for users testing their own setup.

`FakeServer` (fake_openai_server.py) is a local OpenAI-compatible chat and Batch API server with fault
injection (429/500/stalls, malformed or truncated replies, other reply shapes): point
`embedforge-generate client.base_url=...` at it to check a synth config, a client setting or a
proxy without spending tokens. Nothing in the library imports this package.

    from embedforge.testing import FakeServer, FaultConfig
    with FakeServer(FaultConfig(latency_s=0.05, rates={"500": 0.2})) as server:
        ...  # client.base_url=server.base_url

    python -m embedforge.testing.fake_openai_server --port 8011 --fault 500=0.2
"""

from embedforge.testing.fake_openai_server import FakeServer, FaultConfig

__all__ = ["FakeServer", "FaultConfig"]
