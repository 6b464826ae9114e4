"""AllTick (https://alltick.co): the client protocol and the replay server's rules."""
