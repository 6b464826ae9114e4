"""The ceiling: a bare websocket-client loop that reads frames and does nothing with them."""

from __future__ import annotations

import select
import signal

from benchmarks.clients import common

TRADE = b'{"cmd_id":22998'


def main() -> None:
    args = common.parse_args(__doc__ or "")
    progress = common.Progress(args.out)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    links = common.connect_all(args.url, args.codes_file)
    heartbeats = common.Heartbeats()
    while not stop:
        ready, _, _ = select.select(list(links), [], [], 0.05)
        for fd in ready:
            _, frame = links[fd].recv_data_frame(True)
            if frame.data.startswith(TRADE):
                progress.received += 1
        progress.stored = progress.received  # nothing to store: reading is all it does
        progress.maybe_write()
        heartbeats.maybe_send(links.values())
    progress.maybe_write(final=True)


if __name__ == "__main__":
    main()
