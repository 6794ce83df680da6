"""The thin HTTP layer: parse the request, call one service function, return its JSON."""
