"""The kernel under the blueprints: what stages and engines share, importing neither.

Today it holds the running-loop guard (:mod:`rxpipe._core.loops`); the interpreter, the port
state and ``StageStats`` are to move here (issue 10). It imports nothing of rxpipe but
``spec`` and ``errors``, so every other layer may import it.
"""
