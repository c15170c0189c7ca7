"""Engines: how a flow's stages are run (pull: demand; push: channels)."""
