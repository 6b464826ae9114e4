"""Markets keep hours: trading days (``day``), which days each exchange trades (``calendar``)
and the phases of each day with the bar convention that follows them (``sessions``)."""
