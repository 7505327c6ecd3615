"""Persistent state: the gateway's own store and readers of other brokers' files."""
