"""A strict, rate-limited, fault-injecting Klaviyo stand-in, in-process or as a server."""

from __future__ import annotations

from aiohttp import web

from exporter.simulator.app import KlaviyoSimulator, SimulatorConfig

__all__ = ["KlaviyoSimulator", "SimulatorConfig", "RunningSimulator"]


class RunningSimulator:
    """``async with RunningSimulator(config) as sim:`` serves on loopback; ``sim.url`` is its base."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.simulator = KlaviyoSimulator(config)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> RunningSimulator:
        self._runner = web.AppRunner(self.simulator.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
