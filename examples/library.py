"""tether as a library: supervise a shell and print every step, until Ctrl-C.

Run it with ``python examples/library.py`` (tether and tether-process installed).
"""

import trio

from tether import ReconnectPolicy, SessionSpec, open_supervisor


async def main() -> None:
    async with open_supervisor() as sup:  # plugins found via entry points
        # Subscribe first: events published before a subscription exists are not delivered to it.
        with sup.subscribe(types=["reconnect.*", "session.*"]) as events:
            await sup.register(SessionSpec(
                id="build-box",
                backend="process",
                options={"command": "bash"},
                policy=ReconnectPolicy(max_retries=None, base_delay=1, max_delay=30),
            ))
            async for event in events:  # typed events with a global seq
                print(event, flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:  # Ctrl-C: leaving the block above already stopped every session
        print("stopped")
