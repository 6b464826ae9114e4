"""The live market page: ``feedmux web`` serves it and pushes conflated updates to browsers."""
