"""The Responses and Conversations APIs as a second rendering of the engine's runs and threads.

A response is a run and a conversation is a thread (the same stored rows, ids.py); items are the
thread's messages and the function and tool calls of its runs' steps. Creating a response creates a
run that the executor runs like any other; hooks.py holds the few places the engine asks about it.
"""
