"""Adapters: the protocol and storage edges of pacsflow."""
