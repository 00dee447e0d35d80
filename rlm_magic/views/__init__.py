"""Subscribers that show a run: a plain-text log and (later) a live widget view."""
